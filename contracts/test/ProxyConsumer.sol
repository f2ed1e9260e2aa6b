// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "../CryptletProxy.sol";

/// @title ProxyConsumer (test contract)
/// @notice Requests through a CryptletProxy and records what comes back. Used by tests/integration/contracts/test_contracts.py.
contract ProxyConsumer is ICryptletConsumer {
    CryptletProxy public immutable proxy;
    bytes32 public lastId;
    bytes public lastPayload;
    bytes32 public expired;
    uint256 public deliveries;

    constructor(CryptletProxy proxy_) {
        proxy = proxy_;
    }

    function ask(bytes32 topic, uint64 deadline) external returns (bytes32) {
        return proxy.request(topic, "", this.onAnswer.selector, deadline);
    }

    function follow(bytes32 topic, uint64 until) external returns (bytes32) {
        return proxy.subscribe(topic, this.onAnswer.selector, until);
    }

    function onAnswer(bytes32 id, bytes calldata payload) external {
        require(msg.sender == address(proxy));
        lastId = id;
        lastPayload = payload;
        deliveries++;
    }

    function cryptletRequestExpired(bytes32 requestId) external {
        require(msg.sender == address(proxy));
        expired = requestId;
    }
}
