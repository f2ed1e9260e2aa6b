// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./CryptletVerifier.sol";
import "./SignerSet.sol";

/// The signed state does not continue from the state this contract holds.
error StateConflict(bytes32 expectedPrevious, bytes32 gotPrevious);
/// The signed state version is neither the current one (unchanged state) nor the next one.
error StateVersionMismatch(uint64 current, uint64 got);

/// @title ContractCryptlet
/// @notice Base for a contract whose logic runs in a contract cryptlet (or a pool of them). Its
///         functions take the signed envelope and are guarded by `onlyBy`: the envelope must be
///         signed by the bound cryptlet's active key (`quorum == 1`) or by `quorum` distinct active
///         keys of the pool over the same envelope (whose cryptlet field is `pool`), for this chain
///         and this contract, with a sequence above the last accepted one.
///         The fabric signs a contract cryptlet's result as the payload
///         `{"result": R, "state": {"version": N, "hash": H, "previous": P}}` (RFC 8785 JSON;
///         H = keccak256 of the new state's canonical JSON, P = of the state before). `_applyState`
///         rebuilds that JSON from (R, N, H, P), checks its keccak256 is the signed payloadHash, and
///         follows the state as a hash chain: P must be the hash held here and N the version held
///         here (state unchanged, H == P) or the next one.
/// @dev    Keys are mirrored from the ledger through `SignerSet`; `maximumInstances` bounds the
///         active keys, and `quorum <= minimumInstances` so the pool can always meet it.
abstract contract ContractCryptlet is SignerSet, CryptletDomain {
    /// The state fields of a contract cryptlet's payload.
    struct StateSnapshot {
        uint64 version;
        bytes32 hash;
        bytes32 previous;
    }

    /// keccak256("{}"): the hash of the empty state every contract cryptlet starts from.
    bytes32 internal constant EMPTY_STATE_HASH = keccak256("{}");

    /// @notice Instances the fabric keeps running for this contract (the manifest's min_instances).
    uint256 public immutable minimumInstances;
    /// @notice Most instances (the manifest's max_instances); also the most active keys.
    uint256 public immutable maximumInstances;
    /// @notice Signatures an envelope needs: 1, or k of the pool.
    uint256 public immutable quorum;
    /// @notice Identity quorum envelopes name in their cryptlet field.
    address public immutable pool;
    /// @notice The package digest the cryptlet must run (zero: any).
    bytes32 public immutable digest;

    /// @notice Sequence of the last accepted envelope.
    uint64 public lastSequence;
    /// @notice Version of the state snapshot held on chain.
    uint64 public stateVersion;
    /// @notice keccak256 of the canonical JSON of the state held on chain.
    bytes32 public stateHash = EMPTY_STATE_HASH;

    /// @notice The chain followed the cryptlet's state to `version`.
    event StateAdvanced(uint64 version, bytes32 hash, bytes32 previous, uint64 sequence);

    constructor(address owner_, bytes32 digest_, uint256 minimumInstances_, uint256 maximumInstances_,
        uint256 quorum_, address pool_) SignerSet(owner_, uint32(maximumInstances_))
    {
        if (quorum_ == 0 || quorum_ > minimumInstances_ || minimumInstances_ > maximumInstances_
            || maximumInstances_ > type(uint32).max || (quorum_ > 1 && pool_ == address(0))) revert BadConfig();
        digest = digest_;
        minimumInstances = minimumInstances_;
        maximumInstances = maximumInstances_;
        quorum = quorum_;
        pool = pool_;
    }

    /// @notice Only an envelope signed by the bound cryptlet (or a quorum of the pool).
    modifier onlyBy(CryptletVerifier.Envelope calldata e, uint256 chainId,
        CryptletVerifier.Signature[] calldata sigs)
    {
        _verifyBy(e, chainId, sigs);
        _;
    }

    /// @notice The state snapshot held on chain: its version and hash.
    function state() external view returns (uint64 version, bytes32 hash) {
        return (stateVersion, stateHash);
    }

    /// @notice The canonical JSON payload the fabric signs for `result` (canonical JSON bytes) and `s`.
    function statePayload(bytes calldata result, StateSnapshot calldata s) public pure returns (bytes memory) {
        return abi.encodePacked('{"result":', result, ',"state":{"hash":"', _hex(s.hash), '","previous":"',
            _hex(s.previous), '","version":', _decimal(s.version), "}}");
    }

    /// @dev The `onlyBy` check; records the envelope's sequence.
    function _verifyBy(CryptletVerifier.Envelope calldata e, uint256 chainId,
        CryptletVerifier.Signature[] calldata sigs) internal
    {
        if (digest != bytes32(0) && e.digest != digest) revert WrongDigest(digest, e.digest);
        uint64 last = lastSequence;
        if (e.sequence <= last) revert ReplayedSequence(last, e.sequence);
        bytes32 d = _envelopeDigest(e, chainId);
        if (quorum == 1) {
            if (sigs.length != 1) revert QuorumNotMet(sigs.length, 1);
            address signer = CryptletVerifier.recover(d, sigs[0]);
            if (signer != e.cryptlet) revert BadSignature();
            _requireActive(signer);
        } else {
            if (e.cryptlet != pool) revert WrongCryptlet(pool, e.cryptlet);
            _requireQuorum(d, sigs, quorum);
        }
        lastSequence = e.sequence;
    }

    /// @dev Accept the state a verified envelope signed: payload rebuilt and matched, hash chain followed.
    function _applyState(CryptletVerifier.Envelope calldata e, bytes calldata result, StateSnapshot calldata s)
        internal
    {
        bytes32 h = keccak256(statePayload(result, s));
        if (h != e.payloadHash) revert PayloadMismatch(e.payloadHash, h);
        bytes32 current = stateHash;
        uint64 version = stateVersion;
        if (s.previous != current) revert StateConflict(current, s.previous);
        if (s.version == version) {
            if (s.hash != s.previous) revert StateVersionMismatch(version, s.version);
        } else if (s.version != version + 1) {
            revert StateVersionMismatch(version, s.version);
        }
        stateVersion = s.version;
        stateHash = s.hash;
        emit StateAdvanced(s.version, s.hash, s.previous, e.sequence);
    }

    /// @dev "0x" + 64 lowercase hex digits, as `shared.encoding.to_hex` writes hashes.
    function _hex(bytes32 value) private pure returns (bytes memory out) {
        out = new bytes(66);
        bytes16 digits = "0123456789abcdef";
        out[0] = "0";
        out[1] = "x";
        for (uint256 i; i < 32; ) {
            uint8 b = uint8(value[i]);
            out[2 + 2 * i] = digits[b >> 4];
            out[3 + 2 * i] = digits[b & 0x0f];
            unchecked { ++i; }
        }
    }

    /// @dev Decimal digits of `value` (RFC 8785 writes integers below 2^53 this way).
    function _decimal(uint64 value) private pure returns (bytes memory out) {
        if (value == 0) return "0";
        uint256 digits;
        for (uint64 v = value; v != 0; v /= 10) digits++;
        out = new bytes(digits);
        for (uint64 v = value; v != 0; v /= 10) out[--digits] = bytes1(uint8(48 + v % 10));
    }
}
