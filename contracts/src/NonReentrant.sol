// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title NonReentrant
/// @author OpenStreaming
/// @notice A reentrancy guard in one transient storage variable (EIP-1153): the lock costs a TSTORE on
///         entry and one on exit, and is cleared at the end of every transaction whatever happens.
/// @dev Behaves exactly like OpenZeppelin's `ReentrancyGuardTransient` (same error, same selector) but
///      is written with Solidity's native `transient` keyword instead of OpenZeppelin's `TransientSlot`
///      library: slither 0.11 cannot resolve `TransientSlot`'s overloaded `tload`/`tstore` through
///      `using TransientSlot for *` and fails to build IR for the guard, which would leave the
///      analyser blind to every function the guard protects. The modifier is named `nonReentrant`,
///      the name slither's reentrancy detectors recognise.
abstract contract NonReentrant {
    /// @notice A guarded function was entered while another one was running.
    error ReentrancyGuardReentrantCall();

    /// @dev True while a guarded function runs.
    bool private transient _entered;

    /// @dev Refuses to run while another guarded function of this contract is running.
    modifier nonReentrant() {
        if (_entered) revert ReentrancyGuardReentrantCall();
        _entered = true;
        _;
        _entered = false;
    }
}
