//! Combine rules: how the results of several modules implementing one
//! callback become one answer, in config order. The catalog names one rule
//! per callback.

use super::types::{InterestedUsers, JsonObject, UsersForStates};
use super::verdicts::Verdict;
use std::ops::ControlFlow;

pub trait Combine<T> {
    type State;
    type Output;
    /// Only the first module in config order is registered.
    const ONLY_FIRST: bool = false;
    /// A result that stops the chain is a refusal (counted as a denial).
    const BREAK_DENIES: bool = false;
    fn init() -> Self::State;
    /// Takes one module's result; `Break` stops the chain.
    fn fold(state: &mut Self::State, value: T) -> ControlFlow<()>;
    fn finish(state: Self::State) -> Self::Output;
}

/// The first non-allow verdict wins; all allow → allow.
pub struct FirstNonAllow;
impl<T: Verdict> Combine<T> for FirstNonAllow {
    type State = Option<T>;
    type Output = T;
    const BREAK_DENIES: bool = true;
    fn init() -> Option<T> {
        None
    }
    fn fold(state: &mut Option<T>, value: T) -> ControlFlow<()> {
        if value.is_allow() {
            ControlFlow::Continue(())
        } else {
            *state = Some(value);
            ControlFlow::Break(())
        }
    }
    fn finish(state: Option<T>) -> T {
        state.unwrap_or_else(T::allow)
    }
}

/// The first `false` wins; all true → true.
pub struct AllTrue;
impl Combine<bool> for AllTrue {
    type State = bool;
    type Output = bool;
    const BREAK_DENIES: bool = true;
    fn init() -> bool {
        true
    }
    fn fold(state: &mut bool, value: bool) -> ControlFlow<()> {
        *state = value;
        if value {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }
    fn finish(state: bool) -> bool {
        state
    }
}

/// The first `true` wins; all false → false.
pub struct AnyTrue;
impl Combine<bool> for AnyTrue {
    type State = bool;
    type Output = bool;
    const BREAK_DENIES: bool = true;
    fn init() -> bool {
        false
    }
    fn fold(state: &mut bool, value: bool) -> ControlFlow<()> {
        *state = value;
        if value {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn finish(state: bool) -> bool {
        state
    }
}

/// The first `Some` wins.
pub struct FirstSome;
impl<T> Combine<Option<T>> for FirstSome {
    type State = Option<T>;
    type Output = Option<T>;
    fn init() -> Option<T> {
        None
    }
    fn fold(state: &mut Option<T>, value: Option<T>) -> ControlFlow<()> {
        match value {
            Some(v) => {
                *state = Some(v);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    }
    fn finish(state: Option<T>) -> Option<T> {
        state
    }
}

/// Every module is awaited.
pub struct All;
impl Combine<()> for All {
    type State = ();
    type Output = ();
    fn init() {}
    fn fold(_: &mut (), _: ()) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn finish(_: ()) {}
}

/// Every module's output is merged into one.
pub struct Merge;
impl<T: Mergeable> Combine<T> for Merge {
    type State = T;
    type Output = T;
    fn init() -> T {
        T::default()
    }
    fn fold(state: &mut T, value: T) -> ControlFlow<()> {
        state.merge(value)
    }
    fn finish(state: T) -> T {
        state
    }
}

/// Only the first module registered is used.
pub struct FirstRegistered;
impl<T> Combine<T> for FirstRegistered {
    type State = Option<T>;
    type Output = Option<T>;
    const ONLY_FIRST: bool = true;
    fn init() -> Option<T> {
        None
    }
    fn fold(state: &mut Option<T>, value: T) -> ControlFlow<()> {
        *state = Some(value);
        ControlFlow::Break(())
    }
    fn finish(state: Option<T>) -> Option<T> {
        state
    }
}

/// Outputs that merge; `Break` means nothing later can change the result.
pub trait Mergeable: Default {
    fn merge(&mut self, other: Self) -> ControlFlow<()>;
}

/// Unsigned fields: later modules overwrite earlier ones' keys.
impl Mergeable for JsonObject {
    fn merge(&mut self, other: Self) -> ControlFlow<()> {
        self.extend(other);
        ControlFlow::Continue(())
    }
}

/// Presence recipients: the union per user.
impl Mergeable for UsersForStates {
    fn merge(&mut self, other: Self) -> ControlFlow<()> {
        for (user, states) in other {
            self.entry(user).or_default().extend(states);
        }
        ControlFlow::Continue(())
    }
}

/// Interested users: the union, and `All` as soon as any module says so.
impl Mergeable for InterestedUsers {
    fn merge(&mut self, other: Self) -> ControlFlow<()> {
        match (&mut *self, other) {
            (_, InterestedUsers::All) => {
                *self = InterestedUsers::All;
                ControlFlow::Break(())
            }
            (InterestedUsers::All, _) => ControlFlow::Break(()),
            (InterestedUsers::Users(mine), InterestedUsers::Users(theirs)) => {
                mine.extend(theirs);
                ControlFlow::Continue(())
            }
        }
    }
}
