//! Compiles `[context]` (classification rules, ERP work centers) and `[calendars.*]` (shift
//! calendars), reporting every problem with its key path.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::schema::{RawCalendar, RawConfig};
use crate::context::calendar::{
    Break, Calendar, PlannedWindow, Shift, Zone, parse_days, parse_time_of_day,
};
use crate::context::rules::{self, Rules};
use crate::model::{LossCategory, MachineId, Taxonomy, Timestamp};

/// `[context]` and `[calendars]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextConfig {
    pub rules: Arc<Rules>,
    /// ERP work center → machine.
    pub work_centers: BTreeMap<String, MachineId>,
    pub calendars: BTreeMap<String, Arc<Calendar>>,
    /// `[context.drop_folder]`.
    pub drop_folder: Option<crate::context::drop_folder::DropFolder>,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            rules: Arc::new(Rules::defaults()),
            work_centers: BTreeMap::new(),
            calendars: BTreeMap::new(),
            drop_folder: None,
        }
    }
}

impl ContextConfig {
    /// The machine id an ERP identifier names: a configured work center, or a machine id.
    pub fn machine_for(&self, erp_id: &str, machines: &[MachineId]) -> Option<MachineId> {
        let id = erp_id.trim();
        self.work_centers
            .get(id)
            .cloned()
            .or_else(|| machines.iter().find(|m| m.as_str() == id).cloned())
    }

    /// The calendar a machine follows (its own, else the one named `default`).
    pub fn calendar_for(&self, name: Option<&str>) -> Arc<Calendar> {
        name.or(Some("default"))
            .and_then(|n| self.calendars.get(n).cloned())
            .unwrap_or_else(|| Arc::new(Calendar::always()))
    }
}

type Report<'a> = &'a mut dyn FnMut(String, String);

pub(super) fn compile(
    raw: &RawConfig,
    taxonomy: Option<&Taxonomy>,
    machine_ids: &[String],
    report: Report<'_>,
) -> Option<ContextConfig> {
    let before_ok = std::cell::Cell::new(true);
    let mut problem = |k: String, m: String| {
        before_ok.set(false);
        report(k, m);
    };
    let default_taxonomy = Taxonomy::default();
    let taxonomy = taxonomy.unwrap_or(&default_taxonomy);
    let mut all = raw.context.rules.clone();
    if raw.context.default_rules != Some(false) {
        // A built-in rule whose category the shop's taxonomy leaves out is not used.
        all.extend(rules::default_raw().into_iter().filter(|r| {
            r.category == "calendar"
                || crate::model::TimeCategory::parse(&r.category).is_ok_and(|c| match c {
                    crate::model::TimeCategory::Production => true,
                    crate::model::TimeCategory::Loss(l) => taxonomy.contains(&l),
                })
        }));
    }
    let site = raw.context.rules.len();
    let rules = match Rules::compile(&all, taxonomy) {
        Ok(r) => Some(r),
        Err(e) => {
            // Site rules come first, so a failing rule's number is its place in the file.
            let key = if site > 0 {
                "context.rules"
            } else {
                "context.default_rules"
            };
            problem(key.into(), e);
            None
        }
    };
    let mut work_centers = BTreeMap::new();
    for (wc, m) in &raw.context.work_centers {
        let key = format!("context.work_centers.{wc}");
        if machine_ids.iter().any(|x| x == m.trim()) {
            if let Ok(id) = MachineId::new(m.trim()) {
                work_centers.insert(wc.trim().to_string(), id);
            }
        } else {
            problem(
                key,
                format!(
                    "work center {wc:?} names machine {m:?}, which is not configured (machines: {})",
                    machine_ids.join(", ")
                ),
            );
        }
    }
    let mut calendars = BTreeMap::new();
    for (name, c) in &raw.calendars {
        if let Some(cal) = compile_calendar(name, c, taxonomy, &mut problem) {
            calendars.insert(name.clone(), Arc::new(cal));
        }
    }
    let drop_folder = raw.context.drop_folder.as_ref().and_then(|d| {
        for field in d.columns.keys() {
            if !crate::context::dispatch::CSV_FIELDS.contains(&field.as_str()) {
                problem(
                    format!("context.drop_folder.columns.{field}"),
                    format!(
                        "unknown field {field:?}; the fields a column may hold are {}",
                        crate::context::dispatch::CSV_FIELDS.join(", ")
                    ),
                );
            }
        }
        let interval = match &d.interval {
            None => Some(std::time::Duration::from_secs(2)),
            Some(h) => match super::human::parse_duration(&h.0) {
                Ok(i) if !i.is_zero() => Some(i),
                Ok(_) => {
                    problem(
                        "context.drop_folder.interval".into(),
                        "expected a duration above zero, like \"2s\"".into(),
                    );
                    None
                }
                Err(e) => {
                    problem("context.drop_folder.interval".into(), e);
                    None
                }
            },
        };
        interval.map(|interval| crate::context::drop_folder::DropFolder {
            dir: d.dir.clone(),
            columns: d.columns.clone(),
            interval,
        })
    });
    let ok = before_ok.get();
    match rules {
        Some(rules) if ok => Some(ContextConfig {
            rules: Arc::new(rules),
            work_centers,
            calendars,
            drop_folder,
        }),
        _ => None,
    }
}

fn category(
    taxonomy: &Taxonomy,
    s: Option<&str>,
    key: &str,
    problem: &mut dyn FnMut(String, String),
) -> Option<LossCategory> {
    let Some(s) = s else {
        return Some(LossCategory::PLANNED_DOWNTIME);
    };
    match LossCategory::custom(s.trim()) {
        Ok(c) if taxonomy.contains(&c) => Some(c),
        Ok(_) => {
            problem(
                key.to_string(),
                format!("loss category {s:?} is not in the taxonomy"),
            );
            None
        }
        Err(e) => {
            problem(key.to_string(), e);
            None
        }
    }
}

fn compile_calendar(
    name: &str,
    c: &RawCalendar,
    taxonomy: &Taxonomy,
    problem: &mut dyn FnMut(String, String),
) -> Option<Calendar> {
    let at = |k: &str| format!("calendars.{name}.{k}");
    let mut ok = true;
    let mut bad = |k: String, m: String, ok: &mut bool| {
        *ok = false;
        problem(k, m);
    };
    let zone = match Zone::parse(c.time_zone.as_deref().unwrap_or("UTC")) {
        Ok(z) => Some(z),
        Err(e) => {
            bad(at("time_zone"), e, &mut ok);
            None
        }
    };
    let mut holidays = Vec::new();
    for (i, h) in c.holidays.iter().enumerate() {
        match h.trim().parse::<jiff::civil::Date>() {
            Ok(d) => holidays.push(d),
            Err(_) => bad(
                at(&format!("holidays[{i}]")),
                format!("expected a date like \"2026-12-25\", found {h:?}"),
                &mut ok,
            ),
        }
    }
    let mut shifts = Vec::new();
    for (i, s) in c.shifts.iter().enumerate() {
        let k = |f: &str| at(&format!("shifts[{i}].{f}"));
        let mut tod = |f: &str, v: &str, ok: &mut bool| match parse_time_of_day(v) {
            Ok(x) => Some(x),
            Err(e) => {
                bad(k(f), e, ok);
                None
            }
        };
        let start = tod("start", &s.start, &mut ok);
        let end = tod("end", &s.end, &mut ok);
        let days = match parse_days(&s.days) {
            Ok(d) => Some(d),
            Err(e) => {
                bad(k("days"), e, &mut ok);
                None
            }
        };
        if s.name.trim().is_empty() {
            bad(
                k("name"),
                "expected a shift name like \"1\" or \"day\", found an empty string".into(),
                &mut ok,
            );
        }
        let (Some(start), Some(mut end), Some(days)) = (start, end, days) else {
            continue;
        };
        if end <= start {
            end += 86_400;
        }
        let mut breaks = Vec::new();
        for (j, b) in s.breaks.iter().enumerate() {
            let bk = |f: &str| k(&format!("breaks[{j}].{f}"));
            let (bs, be) = (parse_time_of_day(&b.start), parse_time_of_day(&b.end));
            let cat = category(
                taxonomy,
                b.category.as_deref(),
                &bk("category"),
                &mut |a, m| bad(a, m, &mut ok),
            );
            match (bs, be, cat) {
                (Ok(mut bs), Ok(mut be), Some(category)) => {
                    // A break after midnight in a night shift is on the next day.
                    if bs < start {
                        bs += 86_400;
                    }
                    if be <= bs {
                        be += 86_400;
                    }
                    if bs < start || be > end {
                        bad(
                            bk("start"),
                            format!(
                                "the break {}–{} is not inside the shift {}–{}",
                                b.start, b.end, s.start, s.end
                            ),
                            &mut ok,
                        );
                    } else {
                        breaks.push(Break {
                            start: bs,
                            end: be,
                            category,
                        });
                    }
                }
                (Err(e), _, _) => bad(bk("start"), e, &mut ok),
                (_, Err(e), _) => bad(bk("end"), e, &mut ok),
                _ => {}
            }
        }
        shifts.push(Shift {
            name: s.name.trim().to_string(),
            days,
            start,
            end,
            breaks,
        });
    }
    let mut planned = Vec::new();
    if let Some(zone) = &zone {
        for (i, w) in c.planned.iter().enumerate() {
            let k = |f: &str| at(&format!("planned[{i}].{f}"));
            let when = |s: &str| -> Result<Timestamp, String> {
                let dt: jiff::civil::DateTime = s.trim().parse().map_err(|_| {
                    format!("expected a local date and time like \"2026-12-01T06:00\", found {s:?}")
                })?;
                let probe = Calendar {
                    name: String::new(),
                    zone: zone.clone(),
                    shifts: Vec::new(),
                    holidays: Vec::new(),
                    planned: Vec::new(),
                };
                probe
                    .local(dt)
                    .ok_or_else(|| format!("{s:?} is not a time in {name}'s zone"))
            };
            let (s, e) = (when(&w.start), when(&w.end));
            let cat = category(
                taxonomy,
                w.category.as_deref(),
                &k("category"),
                &mut |a, m| bad(a, m, &mut ok),
            );
            match (s, e, cat) {
                (Ok(s), Ok(e), Some(category)) if e > s => planned.push(PlannedWindow {
                    start: s,
                    end: e,
                    category,
                    reason: w.reason.clone().unwrap_or_else(|| "planned".into()),
                }),
                (Ok(_), Ok(_), Some(_)) => bad(
                    k("end"),
                    format!(
                        "expected an end after the start {:?}, found {:?}",
                        w.start, w.end
                    ),
                    &mut ok,
                ),
                (Err(e), _, _) => bad(k("start"), e, &mut ok),
                (_, Err(e), _) => bad(k("end"), e, &mut ok),
                _ => {}
            }
        }
    }
    let zone = zone?;
    ok.then(|| Calendar {
        name: name.to_string(),
        zone,
        shifts,
        holidays,
        planned,
    })
}
