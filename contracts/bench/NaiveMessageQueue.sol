// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title NaiveMessageQueue (benchmark baseline only)
/// @notice What a straightforward (not careless) EIP-712 feed looks like: domain separator rebuilt from strings on
///         every call, the struct abi.encode'd into memory, a dynamic `bytes` signature split by
///         hand, a bool signer mapping, a per-signer sequence mapping and the full history pushed to a
///         storage array. Same envelope and signature as MessageQueue; bench/gas.py measures both.
contract NaiveMessageQueue {
    struct Envelope {
        address cryptlet;
        bytes32 digest;
        bytes32 topic;
        bytes32 requestId;
        uint64 sequence;
        uint64 timestamp;
        bytes32 payloadHash;
        bytes32 evidenceHash;
        bytes32 registration;
    }

    /// Two storage slots per report (payloadHash; sequence, timestamp and updatedAt packed).
    struct Entry {
        bytes32 payloadHash;
        uint64 sequence;
        uint64 timestamp;
        uint64 updatedAt;
    }

    bytes32 constant ENVELOPE_TYPEHASH = keccak256(
        "Envelope(address cryptlet,bytes32 digest,bytes32 topic,bytes32 requestId,uint64 sequence,"
        "uint64 timestamp,bytes32 payloadHash,bytes32 evidenceHash,bytes32 registration)");

    address public owner;
    mapping(address => bool) public signers;
    mapping(address => uint256) public lastSequence;
    Entry[] public history;

    event Reported(address indexed cryptlet, uint64 sequence, bytes32 payloadHash);

    constructor() {
        owner = msg.sender;
    }

    function addSigner(address signer) external {
        require(msg.sender == owner, "not owner");
        signers[signer] = true;
    }

    function submit(Envelope calldata e, bytes calldata signature) external {
        bytes32 separator = keccak256(abi.encode(
            keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
            keccak256(bytes("CryptletFabric")), keccak256(bytes("1")), block.chainid, address(this)));
        bytes32 structHash = keccak256(abi.encode(ENVELOPE_TYPEHASH, e.cryptlet, e.digest, e.topic, e.requestId,
            e.sequence, e.timestamp, e.payloadHash, e.evidenceHash, e.registration));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", separator, structHash));
        require(signature.length == 65, "bad signature length");
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        address signer = ecrecover(digest, v, r, s);
        require(signer != address(0) && signer == e.cryptlet, "bad signature");
        require(signers[signer], "unknown signer");
        require(e.sequence > lastSequence[signer], "replayed");
        lastSequence[signer] = e.sequence;
        history.push(Entry(e.payloadHash, e.sequence, e.timestamp, uint64(block.timestamp)));
        emit Reported(signer, e.sequence, e.payloadHash);
    }

    function latest() external view returns (Entry memory) {
        return history[history.length - 1];
    }
}
