//! Classification rules: an ordered list of `when` expressions over a machine's *facts* (its
//! state, signals and context at a moment), each naming the category it gives. The first rule
//! that holds decides; when none holds, the time is `unexplained`. An operator's reason
//! overrides whatever a rule decided, and the change is kept (see [`super::engine`]).
//!
//! Rules are configuration (`[[context.rules]]`), written in the profile expression language
//! ([`crate::normalize::expr`]); [`DEFAULT_RULES`] is the built-in set, in the same form.

use serde::Deserialize;

use crate::model::{CategorySource, LossCategory, Taxonomy, TimeCategory, Value};
use crate::normalize::expr::{self, Expr};

/// The facts a rule may read, in the order [`Facts`] holds them.
pub const FACTS: &[&str] = &[
    "availability",
    "execution",
    "controller_mode",
    "functional_mode",
    "emergency_stop",
    "alarm",
    "state",
    "program",
    "part_count",
    "single_block",
    "optional_stop",
    "feed_override",
    "tool_number",
    "tool_changed",
    "operator",
    "signed_in",
    "job",
    "operation",
    "operation_active",
    "first_cycle_done",
    "program_proven",
    "hold",
    "inspection_pending",
    "upstream_incomplete",
    "planned",
    "on_shift",
    "stop_seconds",
    "span_seconds",
];

/// Index of a fact in [`FACTS`].
pub fn fact(name: &str) -> usize {
    FACTS.iter().position(|f| *f == name).unwrap_or(0)
}

/// A machine's facts at a moment, in [`FACTS`] order.
pub type Facts = Vec<Value>;

/// The built-in rules, first match wins. Kept as configuration text so that the reference
/// documents exactly what runs, and a shop can copy and change it.
pub const DEFAULT_RULES: &str = r#"
[[rules]]
name = "machine fault"
when = "alarm or emergency_stop == 'TRIGGERED'"
category = "machine_fault"
confidence = 0.9

[[rules]]
name = "maintenance mode"
when = "functional_mode == 'MAINTENANCE'"
category = "maintenance"
confidence = 0.9

[[rules]]
name = "planned time"
when = "planned and state != 'RUN'"
category = "calendar"
source = "planner"
confidence = 0.9

[[rules]]
name = "quality hold"
when = "hold and state != 'RUN'"
category = "quality_hold"
source = "qms"
confidence = 1.0

[[rules]]
name = "inspection pending"
when = "inspection_pending and state != 'RUN'"
category = "waiting_inspection"
source = "qms"
confidence = 1.0

[[rules]]
name = "program prove-out"
when = "not program_proven and program != '' and (functional_mode == 'PROCESS_DEVELOPMENT' or single_block or optional_stop or feed_override < 100)"
category = "program_proveout"
confidence = 0.85

[[rules]]
name = "cutting"
when = "execution == 'ACTIVE' and (controller_mode == 'AUTOMATIC' or controller_mode == 'SEMI_AUTOMATIC' or controller_mode == UNAVAILABLE)"
category = "production"
confidence = 0.95

[[rules]]
name = "setup mode"
when = "functional_mode == 'SETUP' or functional_mode == 'TEARDOWN' or controller_mode == 'EDIT'"
category = "setup"
confidence = 0.85

[[rules]]
name = "manual mode mid-operation"
when = "operation_active and first_cycle_done and (controller_mode == 'MANUAL' or controller_mode == 'MANUAL_DATA_INPUT')"
category = "tool_change"
confidence = 0.6

[[rules]]
name = "manual mode"
when = "controller_mode == 'MANUAL' or controller_mode == 'MANUAL_DATA_INPUT'"
category = "setup"
confidence = 0.7

[[rules]]
name = "before the first cycle"
when = "operation_active and not first_cycle_done"
category = "setup"
confidence = 0.7

[[rules]]
name = "load and unload"
when = "state == 'IDLE' and controller_mode == 'AUTOMATIC' and (execution == 'PROGRAM_COMPLETED' or execution == 'READY') and span_seconds < 90"
category = "production"
confidence = 0.7

[[rules]]
name = "micro-stop"
when = "state != 'OFF' and state != 'RUN' and stop_seconds < 120"
category = "micro_stop"
confidence = 0.7

[[rules]]
name = "upstream incomplete"
when = "upstream_incomplete"
category = "starved"
confidence = 0.7

[[rules]]
name = "nobody signed in"
when = "not signed_in and state == 'IDLE' and controller_mode == 'AUTOMATIC'"
category = "no_operator"
confidence = 0.6
"#;

/// A rule as configuration writes it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub when: String,
    /// A category of the taxonomy, `production`, or `calendar` (the category the shift
    /// calendar gives the moment: a break's, or planned downtime).
    pub category: String,
    /// `rule` (default), `qms` or `planner`: who the decision is attributed to.
    pub source: Option<String>,
    /// 0–1, default 0.8.
    pub confidence: Option<f64>,
}

#[derive(Deserialize)]
struct RuleFile {
    rules: Vec<RawRule>,
}

/// What a rule gives.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleCategory {
    Fixed(TimeCategory),
    /// The calendar's category for planned time.
    Calendar,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub when: Expr,
    pub category: RuleCategory,
    pub source: CategorySource,
    pub confidence: f32,
}

/// The compiled rule list.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

impl Rules {
    /// The built-in rules.
    pub fn defaults() -> Rules {
        // The built-in text is tested to compile; an error here is a bug in this file.
        Rules::compile(&default_raw(), &Taxonomy::default()).unwrap_or(Rules { rules: Vec::new() })
    }

    /// Compiles rules; an error names the rule (1-based position and name) and what is wrong.
    pub fn compile(raw: &[RawRule], taxonomy: &Taxonomy) -> Result<Rules, String> {
        let mut rules = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let at = |what: String| format!("rule {} ({:?}): {what}", i + 1, r.name);
            let when =
                expr::parse(&r.when, |n| FACTS.iter().position(|f| *f == n)).map_err(|e| {
                    // The expression language speaks of signals; a rule reads facts.
                    let unknown = e
                        .message
                        .strip_prefix("unknown signal `")
                        .and_then(|rest| rest.split('`').next());
                    let what = match unknown {
                        Some(name) => {
                            format!("unknown fact `{name}` (at character {})", e.offset + 1)
                        }
                        None => e.to_string(),
                    };
                    at(format!(
                        "when: {what}; the facts a rule may read are {}",
                        FACTS.join(", ")
                    ))
                })?;
            let category = if r.category == "calendar" {
                RuleCategory::Calendar
            } else {
                let c =
                    TimeCategory::parse(&r.category).map_err(|e| at(format!("category: {e}")))?;
                if let TimeCategory::Loss(l) = &c {
                    if !taxonomy.contains(l) {
                        return Err(at(format!(
                            "category: {:?} is not in the taxonomy ({})",
                            r.category,
                            taxonomy
                                .categories()
                                .iter()
                                .map(LossCategory::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                }
                RuleCategory::Fixed(c)
            };
            let source = match r.source.as_deref() {
                None | Some("rule") => CategorySource::Rule,
                Some("qms") => CategorySource::Qms,
                Some("planner") => CategorySource::Planner,
                Some(other) => {
                    return Err(at(format!(
                        "source: expected rule, qms or planner, found {other:?}"
                    )));
                }
            };
            let confidence = r.confidence.unwrap_or(0.8);
            if !(0.0..=1.0).contains(&confidence) {
                return Err(at(format!(
                    "confidence: expected a number from 0 to 1, found {confidence}"
                )));
            }
            rules.push(Rule {
                name: r.name.clone(),
                when,
                category,
                source,
                confidence: confidence as f32,
            });
        }
        Ok(Rules { rules })
    }

    /// The first rule that holds for `facts`.
    pub fn first_match(&self, facts: &[Value]) -> Option<&Rule> {
        self.rules.iter().find(|r| r.when.eval(facts))
    }
}

/// The built-in rules as configuration.
pub fn default_raw() -> Vec<RawRule> {
    toml::from_str::<RuleFile>(DEFAULT_RULES)
        .map(|f| f.rules)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules_compile_and_name_their_errors() {
        let raw = default_raw();
        assert!(raw.len() >= 10);
        let rules = Rules::compile(&raw, &Taxonomy::default()).unwrap();
        assert_eq!(rules.rules.len(), raw.len());
        let bad = RawRule {
            name: "typo".into(),
            when: "exection == 'ACTIVE'".into(),
            category: "setup".into(),
            source: None,
            confidence: None,
        };
        let e = Rules::compile(std::slice::from_ref(&bad), &Taxonomy::default()).unwrap_err();
        assert!(e.starts_with("rule 1 (\"typo\"): when:"), "{e}");
        assert!(e.contains("execution"), "{e}");
        let e = Rules::compile(
            &[RawRule {
                when: "alarm".into(),
                category: "coffee".into(),
                ..bad
            }],
            &Taxonomy::default(),
        )
        .unwrap_err();
        assert!(e.contains("not in the taxonomy"), "{e}");
    }
}
