// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./CryptletVerifier.sol";
import "./SignerSet.sol";

/// No request with this id.
error UnknownRequest(bytes32 requestId);
/// The request was already fulfilled or has expired.
error RequestNotPending(bytes32 requestId);
/// The request's deadline passed: it can only be expired, not fulfilled.
error RequestExpired(bytes32 requestId, uint64 deadline);
/// The request's deadline has not passed yet.
error RequestNotExpired(bytes32 requestId, uint64 deadline);
/// No active subscription with this id.
error UnknownSubscription(bytes32 subscriptionId);
/// The subscription ended at `until`.
error SubscriptionEnded(bytes32 subscriptionId, uint64 until);
/// The caller is not the request's or subscription's consumer.
error NotConsumer(address caller);
/// The envelope's evidence hash is not the attested host's.
error WrongHost(bytes32 expected, bytes32 got);
/// A deadline that is not in the future.
error BadDeadline(uint64 deadline);

/// @title ICryptletConsumer
/// @notice What a contract using a `CryptletProxy` implements. Fulfilments and deliveries call the
///         selector the consumer chose as `callback(bytes32 id, bytes payload)` with the verified
///         payload (RFC 8785 JSON whose keccak256 the cryptlet signed); an expired request calls
///         `cryptletRequestExpired(requestId)`.
interface ICryptletConsumer {
    function cryptletRequestExpired(bytes32 requestId) external;
}

/// @title CryptletProxy
/// @notice A contract's on-chain reference to one utility cryptlet: its name, attested package
///         digest and host evidence, the interface id of its generated header
///         (`type(I<Name>Cryptlet).interfaceId`), and its signing keys (`SignerSet`). Consumers
///         `request` a call or `subscribe` to a topic with a callback and a deadline; an off-chain
///         relayer (the chain adapter) submits the cryptlet's signed envelope with `fulfil` or
///         `deliver`; after the deadline a request can only be `expire`d, which tells the consumer.
/// @dev    First version: one envelope signer per fulfilment (no quorum), callbacks run with the
///         gas left and their failure is recorded (event), not reverted, so a bad consumer cannot
///         block the relayer.
contract CryptletProxy is SignerSet, CryptletDomain {
    enum RequestStatus { None, Pending, Fulfilled, Expired }

    struct Request {
        address consumer;
        uint64 deadline;
        bytes4 callback;
        RequestStatus status;
        bytes32 topic;
    }

    struct Subscription {
        address consumer;
        uint64 until;
        bytes4 callback;
        uint64 lastSequence;
        bytes32 topic;
    }

    /// @notice The cryptlet's registered name.
    string public name;
    /// @notice Its package digest (the measurement its keys are bound to).
    bytes32 public immutable digest;
    /// @notice Hash of the attestation evidence of its host (an envelope's evidenceHash; zero: not checked).
    bytes32 public immutable host;
    /// @notice ERC-165 style id of the cryptlet's interface (`type(I<Name>Cryptlet).interfaceId`).
    bytes4 public immutable interfaceId;

    uint64 public nonce;
    mapping(bytes32 => Request) public requests;
    mapping(bytes32 => Subscription) public subscriptions;

    event Requested(bytes32 indexed requestId, address indexed consumer, bytes32 topic, bytes args, uint64 deadline);
    event Fulfilled(bytes32 indexed requestId, bytes32 payloadHash, bool callbackOk);
    event Expired(bytes32 indexed requestId, bool callbackOk);
    event Subscribed(bytes32 indexed subscriptionId, address indexed consumer, bytes32 topic, uint64 until);
    event Unsubscribed(bytes32 indexed subscriptionId);
    event Delivered(bytes32 indexed subscriptionId, uint64 sequence, bytes32 payloadHash, bool callbackOk);

    constructor(address owner_, string memory name_, bytes32 digest_, bytes32 host_, bytes4 interfaceId_,
        uint32 maxSigners_) SignerSet(owner_, maxSigners_)
    {
        name = name_;
        digest = digest_;
        host = host_;
        interfaceId = interfaceId_;
    }

    /// @notice Ask the cryptlet for `topic` (keccak256 of "<name>.<method>") with ABI/JSON `args`;
    ///         the answer comes to `callback(requestId, payload)` on the caller, if before `deadline`.
    function request(bytes32 topic, bytes calldata args, bytes4 callback, uint64 deadline)
        external returns (bytes32 requestId)
    {
        if (deadline <= block.timestamp) revert BadDeadline(deadline);
        requestId = keccak256(abi.encode(block.chainid, address(this), msg.sender, nonce++));
        requests[requestId] = Request(msg.sender, deadline, callback, RequestStatus.Pending, topic);
        emit Requested(requestId, msg.sender, topic, args, deadline);
    }

    /// @notice Fulfil a pending request with the cryptlet's signed envelope (its requestId is the request's).
    function fulfil(CryptletVerifier.Envelope calldata e, uint256 chainId, CryptletVerifier.Signature calldata sig,
        bytes calldata payload) external
    {
        Request storage r = requests[e.requestId];
        if (r.status == RequestStatus.None) revert UnknownRequest(e.requestId);
        if (r.status != RequestStatus.Pending) revert RequestNotPending(e.requestId);
        if (block.timestamp > r.deadline) revert RequestExpired(e.requestId, r.deadline);
        if (e.topic != r.topic) revert WrongTopic(r.topic, e.topic);
        _verify(e, chainId, sig, payload);
        r.status = RequestStatus.Fulfilled;
        (bool ok, ) = r.consumer.call(abi.encodeWithSelector(r.callback, e.requestId, payload));
        emit Fulfilled(e.requestId, e.payloadHash, ok);
    }

    /// @notice After its deadline, fail a pending request explicitly and tell its consumer.
    function expire(bytes32 requestId) external {
        Request storage r = requests[requestId];
        if (r.status == RequestStatus.None) revert UnknownRequest(requestId);
        if (r.status != RequestStatus.Pending) revert RequestNotPending(requestId);
        if (block.timestamp <= r.deadline) revert RequestNotExpired(requestId, r.deadline);
        r.status = RequestStatus.Expired;
        (bool ok, ) = r.consumer.call(abi.encodeCall(ICryptletConsumer.cryptletRequestExpired, (requestId)));
        emit Expired(requestId, ok);
    }

    /// @notice Receive every envelope of `topic` (e.g. keccak256("market_watcher.Price")) until `until`.
    function subscribe(bytes32 topic, bytes4 callback, uint64 until) external returns (bytes32 subscriptionId) {
        if (until <= block.timestamp) revert BadDeadline(until);
        subscriptionId = keccak256(abi.encode(block.chainid, address(this), msg.sender, nonce++));
        subscriptions[subscriptionId] = Subscription(msg.sender, until, callback, 0, topic);
        emit Subscribed(subscriptionId, msg.sender, topic, until);
    }

    /// @notice End a subscription (its consumer only).
    function unsubscribe(bytes32 subscriptionId) external {
        Subscription storage s = subscriptions[subscriptionId];
        if (s.consumer == address(0)) revert UnknownSubscription(subscriptionId);
        if (s.consumer != msg.sender) revert NotConsumer(msg.sender);
        delete subscriptions[subscriptionId];
        emit Unsubscribed(subscriptionId);
    }

    /// @notice Deliver one signed envelope of the subscribed topic (sequence above the last delivered).
    function deliver(bytes32 subscriptionId, CryptletVerifier.Envelope calldata e, uint256 chainId,
        CryptletVerifier.Signature calldata sig, bytes calldata payload) external
    {
        Subscription storage s = subscriptions[subscriptionId];
        if (s.consumer == address(0)) revert UnknownSubscription(subscriptionId);
        if (block.timestamp > s.until) revert SubscriptionEnded(subscriptionId, s.until);
        if (e.topic != s.topic) revert WrongTopic(s.topic, e.topic);
        if (e.sequence <= s.lastSequence) revert ReplayedSequence(s.lastSequence, e.sequence);
        _verify(e, chainId, sig, payload);
        s.lastSequence = e.sequence;
        (bool ok, ) = s.consumer.call(abi.encodeWithSelector(s.callback, subscriptionId, payload));
        emit Delivered(subscriptionId, e.sequence, e.payloadHash, ok);
    }

    function _verify(CryptletVerifier.Envelope calldata e, uint256 chainId, CryptletVerifier.Signature calldata sig,
        bytes calldata payload) private view
    {
        if (e.digest != digest) revert WrongDigest(digest, e.digest);
        if (host != bytes32(0) && e.evidenceHash != host) revert WrongHost(host, e.evidenceHash);
        bytes32 h = keccak256(payload);
        if (h != e.payloadHash) revert PayloadMismatch(e.payloadHash, h);
        address signer = CryptletVerifier.recover(_envelopeDigest(e, chainId), sig);
        if (signer != e.cryptlet) revert BadSignature();
        _requireActive(signer);
    }
}
