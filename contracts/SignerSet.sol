// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./CryptletVerifier.sol";

/// @title SignerSet
/// @notice The cryptlet signing keys a contract accepts, mirrored from the fabric's ledger by the
///         owner (an operator, a multisig or later the chain adapter):
///         - `cryptlet.registered` (a key established)   -> `addSigner(key, entryHash)`
///         - `cryptlet.key_rotated` (old superseded)     -> `rotateSigner(old, new, entryHash)`
///         - `cryptlet.key_revoked` / `cryptlet_retired` -> `revokeSigner(key, entryHash)`
///         Each call records the ledger entry hash it mirrors in its event, so the on-chain set can be
///         audited against the ledger. Revocation is final: a revoked or rotated-out key can never be
///         added again, and every envelope it signed afterwards (or before, but submitted later)
///         reverts `RevokedSigner(key)`.
/// @dev    One storage slot per key (its status); verification costs one SLOAD per signer.
abstract contract SignerSet {
    /// Status of a key. `Unknown` is the default for every address.
    enum Status { Unknown, Active, Revoked }

    /// @notice Who may change the set.
    address public owner;
    /// @notice Number of keys currently `Active` (the n of a k-of-n quorum).
    uint32 public activeSigners;
    /// @notice Upper bound on active keys (a pool's `maximumInstances`); 0 = unbounded.
    uint32 public immutable maxSigners;

    mapping(address => Status) private _status;

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event SignerAdded(address indexed signer, bytes32 ledgerEntry);
    event SignerRotated(address indexed oldSigner, address indexed newSigner, bytes32 ledgerEntry);
    event SignerRevoked(address indexed signer, bytes32 ledgerEntry);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(address owner_, uint32 maxSigners_) {
        owner = owner_;
        maxSigners = maxSigners_;
        emit OwnershipTransferred(address(0), owner_);
    }

    /// @notice The status of `signer` (0 unknown, 1 active, 2 revoked).
    function signerStatus(address signer) external view returns (Status) {
        return _status[signer];
    }

    /// @notice Authorise `signer` (a registered cryptlet key); `ledgerEntry` is its registration entry hash.
    function addSigner(address signer, bytes32 ledgerEntry) external onlyOwner {
        _add(signer);
        emit SignerAdded(signer, ledgerEntry);
    }

    /// @notice Replace `oldSigner` by `newSigner` (a ledger key rotation); the old key is revoked.
    function rotateSigner(address oldSigner, address newSigner, bytes32 ledgerEntry) external onlyOwner {
        _revoke(oldSigner);
        _add(newSigner);
        emit SignerRotated(oldSigner, newSigner, ledgerEntry);
    }

    /// @notice Revoke `signer` for good (a ledger key revocation or the cryptlet's retirement).
    function revokeSigner(address signer, bytes32 ledgerEntry) external onlyOwner {
        _revoke(signer);
        emit SignerRevoked(signer, ledgerEntry);
    }

    /// @notice Hand the set to a new owner.
    function transferOwnership(address newOwner) external onlyOwner {
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function _add(address signer) private {
        Status status = _status[signer];
        if (signer == address(0)) revert BadConfig();
        if (status == Status.Revoked) revert RevokedSigner(signer);
        if (status == Status.Active) return;
        if (maxSigners != 0 && activeSigners >= maxSigners) revert BadConfig();
        _status[signer] = Status.Active;
        activeSigners += 1;
    }

    function _revoke(address signer) private {
        Status status = _status[signer];
        if (status == Status.Unknown) revert UnknownSigner(signer);
        if (status == Status.Revoked) return;
        _status[signer] = Status.Revoked;
        activeSigners -= 1;
    }

    /// @dev Revert unless `signer` is active: `UnknownSigner` or `RevokedSigner`.
    function _requireActive(address signer) internal view {
        Status status = _status[signer];
        if (status != Status.Active) {
            if (status == Status.Revoked) revert RevokedSigner(signer);
            revert UnknownSigner(signer);
        }
    }

    /// @dev Verify a k-of-n quorum over one digest: every signature valid, low-S, by an active key,
    ///      signers in strictly increasing address order (so no key counts twice), at least `k` of them.
    function _requireQuorum(bytes32 digest, CryptletVerifier.Signature[] calldata sigs, uint256 k) internal view {
        uint256 n = sigs.length;
        if (n < k) revert QuorumNotMet(n, k);
        address previous;
        for (uint256 i; i < n; ) {
            address signer = CryptletVerifier.recover(digest, sigs[i]);
            if (signer <= previous) {
                if (signer == previous) revert DuplicateSigner(signer);
                revert UnsortedSigners(previous, signer);
            }
            _requireActive(signer);
            previous = signer;
            unchecked { ++i; }
        }
    }
}
