// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "../CryptletProxy.sol";

/// @title PropertyRecord (test contract)
/// @notice The paper's PropertyPrivacy example through a CryptletProxy: a property record keeps a
///         private field (say, the sale price) on chain only as the PropertyPrivacy cryptlet's
///         ciphertext to the counterparties' keys. The request names the field, context and
///         recipients (public); the value goes to the fabric off chain; the proxy checks the signed
///         envelope and this callback stores the ciphertext object (RFC 8785 JSON) it verified.
///         Used by tests/test_chain_e2e.py.
contract PropertyRecord is ICryptletConsumer {
    CryptletProxy public immutable proxy;
    /// @notice request id => the verified payload `{"encrypted": {...}}` (ECIES ciphertext object).
    mapping(bytes32 => bytes) public sealedFields;
    bytes32 public lastRequest;

    event FieldSealed(bytes32 indexed requestId, bytes32 payloadHash);

    constructor(CryptletProxy proxy_) {
        proxy = proxy_;
    }

    function seal(bytes32 topic, bytes calldata args, uint64 deadline) external returns (bytes32 id) {
        id = proxy.request(topic, args, this.onSealed.selector, deadline);
        lastRequest = id;
    }

    function onSealed(bytes32 id, bytes calldata payload) external {
        if (msg.sender != address(proxy)) revert NotConsumer(msg.sender);
        sealedFields[id] = payload;
        emit FieldSealed(id, keccak256(payload));
    }

    function cryptletRequestExpired(bytes32) external view {
        if (msg.sender != address(proxy)) revert NotConsumer(msg.sender);
    }
}
