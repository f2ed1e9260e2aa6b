// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "../ContractCryptlet.sol";

/// @title StateMirror (test contract)
/// @notice The smallest ContractCryptlet: follows a contract cryptlet's state and keeps the hash of
///         its last result. Used by tests/integration/contracts/test_contracts.py.
contract StateMirror is ContractCryptlet {
    bytes32 public lastResultHash;

    constructor(address owner_, bytes32 digest_, uint256 minimumInstances_, uint256 maximumInstances_,
        uint256 quorum_, address pool_) ContractCryptlet(owner_, digest_, minimumInstances_, maximumInstances_,
        quorum_, pool_) {}

    /// @notice Accept a signed contract-cryptlet result and its state snapshot.
    function advance(CryptletVerifier.Envelope calldata e, uint256 chainId,
        CryptletVerifier.Signature[] calldata sigs, bytes calldata result, StateSnapshot calldata s)
        external onlyBy(e, chainId, sigs)
    {
        _applyState(e, result, s);
        lastResultHash = keccak256(result);
    }
}
