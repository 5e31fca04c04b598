//! The canonical machine state, in the standards' own words (MTConnect, OPC 40001).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// A text is not one of an enumeration's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of {expected}, found {found:?}")]
pub struct ParseStateError {
    pub expected: &'static str,
    pub found: String,
}

macro_rules! mtc_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        // By hand: the derive does not see the serde names through the macro.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseStateError;
            /// Accepts the standard's word in any case, with `-` or space for `_`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let norm: String = s
                    .trim()
                    .chars()
                    .map(|c| if c == '-' || c == ' ' { '_' } else { c.to_ascii_uppercase() })
                    .collect();
                match norm.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseStateError {
                        expected: concat!($($text, " "),+),
                        found: s.to_string(),
                    }),
                }
            }
        }
    };
}

mtc_enum!(
    /// MTConnect Availability; OPC 40001 MachineryItemState NotAvailable when unavailable.
    Availability {
        Available => "AVAILABLE",
        Unavailable => "UNAVAILABLE",
    }
);

mtc_enum!(
    /// MTConnect Execution.
    Execution {
        Ready => "READY",
        Active => "ACTIVE",
        Interrupted => "INTERRUPTED",
        FeedHold => "FEED_HOLD",
        Stopped => "STOPPED",
        OptionalStop => "OPTIONAL_STOP",
        ProgramStopped => "PROGRAM_STOPPED",
        ProgramCompleted => "PROGRAM_COMPLETED",
        Wait => "WAIT",
    }
);

mtc_enum!(
    /// MTConnect ControllerMode.
    ControllerMode {
        Automatic => "AUTOMATIC",
        Manual => "MANUAL",
        ManualDataInput => "MANUAL_DATA_INPUT",
        SemiAutomatic => "SEMI_AUTOMATIC",
        Edit => "EDIT",
    }
);

mtc_enum!(
    /// MTConnect FunctionalMode.
    FunctionalMode {
        Production => "PRODUCTION",
        Setup => "SETUP",
        Teardown => "TEARDOWN",
        Maintenance => "MAINTENANCE",
        ProcessDevelopment => "PROCESS_DEVELOPMENT",
    }
);

mtc_enum!(
    /// MTConnect EmergencyStop.
    EmergencyStop {
        Armed => "ARMED",
        Triggered => "TRIGGERED",
    }
);

mtc_enum!(
    /// The shop's own view, derived from the standard states: is the machine making parts?
    ShopState {
        Run => "RUN",
        Idle => "IDLE",
        Down => "DOWN",
        Off => "OFF",
    }
);

/// What a machine is doing now, as far as the bridge knows. `None` fields are unknown (never
/// reported, or UNAVAILABLE).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineState {
    pub availability: Availability,
    pub execution: Option<Execution>,
    pub controller_mode: Option<ControllerMode>,
    pub functional_mode: Option<FunctionalMode>,
    pub emergency_stop: Option<EmergencyStop>,
    /// At least one fault-level alarm (MTConnect condition FAULT) is active.
    pub alarm: bool,
    pub program: Option<String>,
    pub part_count: Option<i64>,
}

impl Default for MachineState {
    fn default() -> Self {
        Self {
            availability: Availability::Unavailable,
            execution: None,
            controller_mode: None,
            functional_mode: None,
            emergency_stop: None,
            alarm: false,
            program: None,
            part_count: None,
        }
    }
}

impl MachineState {
    /// The run / idle / down / off view:
    /// - OFF: the machine (or the link to it) is unavailable;
    /// - DOWN: e-stop triggered, a fault alarm active, or execution INTERRUPTED;
    /// - RUN: execution ACTIVE (cutting or moving under program control);
    /// - IDLE: everything else (ready, stopped, feed hold, optional stop, waiting …).
    pub fn shop_state(&self) -> ShopState {
        if self.availability == Availability::Unavailable {
            return ShopState::Off;
        }
        if self.emergency_stop == Some(EmergencyStop::Triggered)
            || self.alarm
            || self.execution == Some(Execution::Interrupted)
        {
            return ShopState::Down;
        }
        if self.execution == Some(Execution::Active) {
            return ShopState::Run;
        }
        ShopState::Idle
    }

    /// True when the parts of the state that define an interval differ (program and part count
    /// changes do not close an interval; they are observations).
    pub fn same_interval_as(&self, other: &MachineState) -> bool {
        self.availability == other.availability
            && self.execution == other.execution
            && self.controller_mode == other.controller_mode
            && self.functional_mode == other.functional_mode
            && self.emergency_stop == other.emergency_stop
            && self.alarm == other.alarm
    }
}

/// A state with the time it was entered, as kept live per machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimedState {
    pub state: MachineState,
    pub since: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mtconnect_words_leniently() {
        assert_eq!(
            "FEED_HOLD".parse::<Execution>().unwrap(),
            Execution::FeedHold
        );
        assert_eq!(
            "feed-hold".parse::<Execution>().unwrap(),
            Execution::FeedHold
        );
        assert_eq!(
            "MANUAL_DATA_INPUT".parse::<ControllerMode>().unwrap(),
            ControllerMode::ManualDataInput
        );
        let e = "RUNNING".parse::<Execution>().unwrap_err();
        assert!(e.to_string().contains("ACTIVE"), "{e}");
    }

    #[test]
    fn shop_state_follows_the_standard_states() {
        let mut s = MachineState::default();
        assert_eq!(s.shop_state(), ShopState::Off);
        s.availability = Availability::Available;
        assert_eq!(s.shop_state(), ShopState::Idle);
        s.execution = Some(Execution::Active);
        assert_eq!(s.shop_state(), ShopState::Run);
        s.alarm = true;
        assert_eq!(s.shop_state(), ShopState::Down);
        s.alarm = false;
        s.emergency_stop = Some(EmergencyStop::Triggered);
        assert_eq!(s.shop_state(), ShopState::Down);
    }
}
