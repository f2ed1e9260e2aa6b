// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./CryptletVerifier.sol";
import "./SignerSet.sol";

/// @title MessageQueue
/// @notice A signed value feed from a cryptlet: each accepted report is an envelope the fabric
///         signed (EIP-712, `shared/envelope.py`) whose domain is this chain and this contract.
///         On chain it keeps the latest value (the envelope's payloadHash), its sequence, signed
///         timestamp and arrival time (`updatedAt`); the history is the `Reported` event log.
/// @dev    Gas: one 32-byte slot for the value and one packed slot for
///         (sequence, timestamp, updatedAt, rounds), both overwritten per report (2 x 5,000 gas
///         warm), one SLOAD per signer, one `ecrecover` per signature. History as events costs
///         ~8 gas per byte instead of >= 20,000 gas per new storage slot of an array.
contract MessageQueue is SignerSet, CryptletDomain {
    /// Packed into one storage slot.
    struct Latest {
        uint64 sequence;   // envelope sequence of the latest report
        uint64 timestamp;  // signed production time, ms since the Unix epoch
        uint64 updatedAt;  // block.timestamp when it was stored
        uint64 rounds;     // reports accepted so far
    }

    /// @notice keccak256 of the topic this queue accepts (zero: any topic).
    bytes32 public immutable topic;
    /// @notice Package digest the cryptlet must run (zero: any digest).
    bytes32 public immutable digest;
    /// @notice Expected seconds between reports: the default freshness bound of `requireFresh()`.
    uint64 public immutable heartbeat;
    /// @notice Signatures a report needs: 1 (one cryptlet key) or k of a pool's keys.
    uint256 public immutable quorum;
    /// @notice For quorum reports: the address every pool member writes in the envelope's cryptlet field.
    address public immutable pool;

    bytes32 private _value;
    Latest private _latest;

    /// @notice One accepted report: the on-chain history of this queue. The full envelope is in the
    ///         transaction's calldata, so the history can be re-verified from it.
    event Reported(address indexed cryptlet, uint64 sequence, uint64 timestamp, bytes32 payloadHash,
        bytes32 requestId);

    /// @param owner_ who manages the signer set
    /// @param topic_ keccak256 of the accepted topic string (zero: any)
    /// @param digest_ the package digest to require (zero: any)
    /// @param heartbeat_ expected seconds between reports
    /// @param quorum_ 1 for single-signer reports, k > 1 for k-of-n pool reports
    /// @param pool_ the pool identity quorum envelopes name in their cryptlet field (ignored if quorum_ = 1)
    /// @param maxSigners_ maximum active keys (0: unbounded)
    constructor(address owner_, bytes32 topic_, bytes32 digest_, uint64 heartbeat_, uint256 quorum_, address pool_,
        uint32 maxSigners_) SignerSet(owner_, maxSigners_)
    {
        if (quorum_ == 0 || (quorum_ > 1 && pool_ == address(0)) || (maxSigners_ != 0 && quorum_ > maxSigners_)) {
            revert BadConfig();
        }
        topic = topic_;
        digest = digest_;
        heartbeat = heartbeat_;
        quorum = quorum_;
        pool = pool_;
    }

    /// @notice Store a report signed by one active cryptlet key (`quorum == 1`).
    /// @param e the envelope's fields (`topic` hashed, `payloadHash` as signed)
    /// @param chainId the envelope's `domain.chainId`
    /// @param sig its signature (v, r, s)
    function submit(CryptletVerifier.Envelope calldata e, uint256 chainId, CryptletVerifier.Signature calldata sig)
        external
    {
        if (quorum != 1) revert QuorumNotMet(1, quorum);
        Latest memory last = _check(e);
        address signer = CryptletVerifier.recover(_envelopeDigest(e, chainId), sig);
        if (signer != e.cryptlet) revert BadSignature();
        _requireActive(signer);
        _store(e, last, signer);
    }

    /// @notice Store a report signed by `quorum` distinct active keys of the pool, all over the same
    ///         envelope (whose cryptlet field is `pool`); signatures sorted by signer address.
    function submitQuorum(CryptletVerifier.Envelope calldata e, uint256 chainId,
        CryptletVerifier.Signature[] calldata sigs) external
    {
        if (e.cryptlet != pool) revert WrongCryptlet(pool, e.cryptlet);
        Latest memory last = _check(e);
        _requireQuorum(_envelopeDigest(e, chainId), sigs, quorum);
        _store(e, last, pool);
    }

    /// @notice The latest value and its metadata.
    function latest() external view returns (bytes32 value_, uint64 sequence, uint64 timestamp,
        uint64 updatedAt_, uint64 rounds)
    {
        Latest memory l = _latest;
        return (_value, l.sequence, l.timestamp, l.updatedAt, l.rounds);
    }

    /// @notice The latest value (payloadHash of the latest report); zero before the first.
    function value() external view returns (bytes32) {
        return _value;
    }

    /// @notice block.timestamp at which the latest report was stored (0: none yet).
    function updatedAt() external view returns (uint64) {
        return _latest.updatedAt;
    }

    /// @notice Sequence of the latest report; a new one must be above it.
    function lastSequence() external view returns (uint64) {
        return _latest.sequence;
    }

    /// @notice Whether the latest value is at most `heartbeat` seconds old.
    function isFresh() external view returns (bool) {
        return _fresh(heartbeat);
    }

    /// @notice Revert `StaleValue(updatedAt, maxAge)` unless a value exists whose age is at most
    ///         `maxAge` seconds. Age runs from the earlier of the signed production time and the
    ///         arrival on chain, so a relayer holding an envelope back does not make it look fresh.
    function requireFresh(uint64 maxAge) public view returns (bytes32) {
        if (!_fresh(maxAge)) revert StaleValue(_latest.updatedAt, maxAge);
        return _value;
    }

    /// @notice `requireFresh(heartbeat)`.
    function requireFresh() external view returns (bytes32) {
        return requireFresh(heartbeat);
    }

    /// @notice Whether `payload` (canonical JSON bytes) is the latest value's payload.
    function isLatestPayload(bytes calldata payload) external view returns (bool) {
        return keccak256(payload) == _value;
    }

    function _fresh(uint64 maxAge) private view returns (bool) {
        Latest memory l = _latest;
        if (l.rounds == 0) return false;
        uint256 since = l.updatedAt;
        uint256 produced = l.timestamp / 1000;
        if (produced < since) since = produced;
        return block.timestamp <= since + maxAge;
    }

    /// @dev Cheap checks first (no signature work for a report that cannot be stored).
    function _check(CryptletVerifier.Envelope calldata e) private view returns (Latest memory last) {
        if (topic != bytes32(0) && e.topic != topic) revert WrongTopic(topic, e.topic);
        if (digest != bytes32(0) && e.digest != digest) revert WrongDigest(digest, e.digest);
        last = _latest;
        if (e.sequence <= last.sequence) revert ReplayedSequence(last.sequence, e.sequence);
    }

    function _store(CryptletVerifier.Envelope calldata e, Latest memory last, address cryptlet) private {
        bytes32 payloadHash = e.payloadHash;
        uint64 sequence = e.sequence;
        uint64 timestamp = e.timestamp;
        _value = payloadHash;
        _latest = Latest(sequence, timestamp, uint64(block.timestamp), last.rounds + 1);
        emit Reported(cryptlet, sequence, timestamp, payloadHash, e.requestId);
    }
}
