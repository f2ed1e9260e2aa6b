// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "../CryptletProxy.sol";

/// @title MarketConsumer (test contract)
/// @notice The paper's MarketWatcher example through a CryptletProxy: the contract requests quotes
///         and subscribes to market events, and its `CalculatePrice` callback receives each verified
///         value (the RFC 8785 JSON payload whose keccak256 the cryptlet signed and the proxy checked).
///         Every callback is recorded so tests/test_chain_e2e.py can count and check them.
contract MarketConsumer is ICryptletConsumer {
    CryptletProxy public immutable proxy;
    bytes32[] private _ids;
    bytes[] private _payloads;
    /// @notice How many times each request or subscription id was called back.
    mapping(bytes32 => uint256) public callbacks;
    bytes32[] private _expired;

    event PriceCalculated(bytes32 indexed id, uint256 index, bytes32 payloadHash);

    constructor(CryptletProxy proxy_) {
        proxy = proxy_;
    }

    function ask(bytes32 topic, bytes calldata args, uint64 deadline) external returns (bytes32) {
        return proxy.request(topic, args, this.CalculatePrice.selector, deadline);
    }

    function watch(bytes32 topic, uint64 until) external returns (bytes32) {
        return proxy.subscribe(topic, this.CalculatePrice.selector, until);
    }

    function stopWatching(bytes32 subscriptionId) external {
        proxy.unsubscribe(subscriptionId);
    }

    /// @notice The callback: `payload` is the verified cryptlet result (prices as decimal text and
    ///         as integers scaled by 1e8).
    function CalculatePrice(bytes32 id, bytes calldata payload) external {
        if (msg.sender != address(proxy)) revert NotConsumer(msg.sender);
        callbacks[id] += 1;
        _ids.push(id);
        _payloads.push(payload);
        emit PriceCalculated(id, _ids.length - 1, keccak256(payload));
    }

    function cryptletRequestExpired(bytes32 requestId) external {
        if (msg.sender != address(proxy)) revert NotConsumer(msg.sender);
        _expired.push(requestId);
    }

    function count() external view returns (uint256) {
        return _ids.length;
    }

    function record(uint256 index) external view returns (bytes32 id, bytes memory payload) {
        return (_ids[index], _payloads[index]);
    }

    function expiredCount() external view returns (uint256) {
        return _expired.length;
    }
}
