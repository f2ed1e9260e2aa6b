// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// ---------------------------------------------------------------------------------------------
// Errors shared by every Cryptlet Fabric contract (free errors: one selector each, whichever
// contract reverts with them). Named errors, never strings.
// ---------------------------------------------------------------------------------------------

/// The signature does not recover to the expected signer (forged, tampered or malformed).
error BadSignature();
/// The signature's s is in the upper half of the curve order (malleable twin of a low-S signature).
error HighS();
/// The envelope's EIP-712 domain names a chain id other than this chain's.
error WrongChain(uint256 expected, uint256 got);
/// The recovered signer was never added to this contract's signer set.
error UnknownSigner(address signer);
/// The recovered signer was revoked (or rotated out); its envelopes are refused for good.
error RevokedSigner(address signer);
/// The envelope's sequence is not above the last accepted one (replay or out of order).
error ReplayedSequence(uint64 last, uint64 got);
/// The latest value is older than the caller allows (or there is none yet).
error StaleValue(uint64 updatedAt, uint64 maxAge);
/// Fewer distinct authorised signatures than the quorum needs.
error QuorumNotMet(uint256 got, uint256 needed);
/// The same signer appears twice in a quorum.
error DuplicateSigner(address signer);
/// Quorum signatures must be ordered by strictly increasing signer address.
error UnsortedSigners(address previous, address next);
/// The envelope's topic hash is not the one this contract accepts.
error WrongTopic(bytes32 expected, bytes32 got);
/// The envelope's package digest is not the one this contract is bound to.
error WrongDigest(bytes32 expected, bytes32 got);
/// The envelope's cryptlet field is not the one this call requires (quorum envelopes name the pool).
error WrongCryptlet(address expected, address got);
/// keccak256 of the payload bytes is not the envelope's payloadHash.
error PayloadMismatch(bytes32 expected, bytes32 got);
/// Only the owner may do this.
error NotOwner(address caller);
/// A constructor or admin argument is out of range.
error BadConfig();

/// @title CryptletVerifier
/// @notice EIP-712 verification of Cryptlet Fabric envelopes, exactly as `shared/envelope.py`
///         signs them: domain `EIP712Domain(string name,string version,uint256 chainId,address
///         verifyingContract)` with name "CryptletFabric" and version "1", struct `Envelope(...)`
///         below, digest `keccak256(0x1901 || domainSeparator || hashStruct(envelope))`, and
///         65-byte secp256k1 signatures with v in {27, 28} and low s (EIP-2).
/// @dev    Only `ecrecover` (the precompile) does elliptic-curve work; nothing here is hand-written crypto.
library CryptletVerifier {
    /// @notice The signed envelope, field for field in EIP-712 order. Static only: in calldata it
    ///         is nine contiguous 32-byte words, hashed in place.
    struct Envelope {
        address cryptlet;      // signer address (or, for a quorum envelope, the pool's identity)
        bytes32 digest;        // SHA-256 package measurement
        bytes32 topic;         // keccak256(utf8 topic string)
        bytes32 requestId;
        uint64 sequence;       // strictly increasing per signer
        uint64 timestamp;      // ms since the Unix epoch, region clock
        bytes32 payloadHash;   // keccak256(RFC 8785 canonical JSON of the payload)
        bytes32 evidenceHash;  // SHA-256 of the key's attestation evidence, or zero
        bytes32 registration;  // ledger entry hash of the key's registration
    }

    /// @notice A 65-byte `r || s || v` signature, passed as three static words (cheaper than `bytes`).
    struct Signature {
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant ENVELOPE_TYPEHASH = keccak256(
        "Envelope(address cryptlet,bytes32 digest,bytes32 topic,bytes32 requestId,uint64 sequence,"
        "uint64 timestamp,bytes32 payloadHash,bytes32 evidenceHash,bytes32 registration)");
    bytes32 internal constant NAME_HASH = keccak256("CryptletFabric");
    bytes32 internal constant VERSION_HASH = keccak256("1");
    /// secp256k1 n / 2: the largest s a canonical (low-S) signature may have.
    uint256 internal constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice The EIP-712 domain separator of the fabric domain on `chainId` for `verifyingContract`.
    function domainSeparator(uint256 chainId, address verifyingContract) internal pure returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chainId, verifyingContract));
    }

    /// @notice hashStruct(envelope) = keccak256(ENVELOPE_TYPEHASH || the nine encoded fields).
    /// @dev The calldata struct already is the EIP-712 encoding (each field one left-padded word),
    ///      so it is copied once into scratch memory and hashed. A field with dirty high bits only
    ///      changes the hash (the signature then fails); it can never make a bad envelope pass.
    function hashEnvelope(Envelope calldata e) internal pure returns (bytes32 h) {
        bytes32 typehash = ENVELOPE_TYPEHASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typehash)
            calldatacopy(add(m, 0x20), e, 0x120)
            h := keccak256(m, 0x140)
        }
    }

    /// @notice The EIP-712 digest the cryptlet signed: keccak256(0x1901 || separator || hashStruct).
    function signingHash(bytes32 separator, Envelope calldata e) internal pure returns (bytes32 digest) {
        bytes32 structHash = hashEnvelope(e);
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, hex"1901")
            mstore(add(m, 0x02), separator)
            mstore(add(m, 0x22), structHash)
            digest := keccak256(m, 0x42)
        }
    }

    /// @notice Recover the signer of `digest`. Reverts `HighS()` for s > n/2 and `BadSignature()`
    ///         for v not in {27, 28} or a signature that recovers to no address.
    function recover(bytes32 digest, Signature calldata sig) internal pure returns (address signer) {
        uint8 v = sig.v;
        bytes32 s = sig.s;
        if (uint256(s) > HALF_N) revert HighS();
        if (v != 27 && v != 28) revert BadSignature();
        signer = ecrecover(digest, v, sig.r, s);
        if (signer == address(0)) revert BadSignature();
    }
}

/// @title CryptletDomain
/// @notice Binds a contract to the fabric's EIP-712 domain on this chain with itself as the
///         verifying contract. The separator is computed once at deployment and recomputed only
///         if the chain id changes (a fork), as `shared.envelope.Domain(chain_id, address).separator()`.
abstract contract CryptletDomain {
    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedSeparator;
    address private immutable _self;

    constructor() {
        _cachedChainId = block.chainid;
        _self = address(this);
        _cachedSeparator = CryptletVerifier.domainSeparator(block.chainid, address(this));
    }

    /// @notice The EIP-712 domain separator envelopes for this contract must be signed under.
    function domainSeparator() public view returns (bytes32) {
        if (block.chainid == _cachedChainId && address(this) == _self) return _cachedSeparator;
        return CryptletVerifier.domainSeparator(block.chainid, address(this));
    }

    /// @notice EIP-5267: the domain's fields, for wallets and tools.
    function eip712Domain() external view returns (bytes1 fields, string memory name, string memory version,
        uint256 chainId, address verifyingContract, bytes32 salt, uint256[] memory extensions)
    {
        return (hex"0f", "CryptletFabric", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// @dev The digest to recover from; `chainId` is the envelope document's `domain.chainId`
    ///      (reverts `WrongChain` if it is not this chain's, before any signature work).
    function _envelopeDigest(CryptletVerifier.Envelope calldata e, uint256 chainId) internal view returns (bytes32) {
        if (chainId != block.chainid) revert WrongChain(block.chainid, chainId);
        return CryptletVerifier.signingHash(domainSeparator(), e);
    }
}
