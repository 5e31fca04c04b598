//! Prometheus text exposition for `/metrics`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::HttpState;
use crate::drivers::DriverCounters;
use crate::model::LinkStatus;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident set size of this process in bytes (Linux), 0 where unknown.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

pub fn render_metrics(s: &HttpState) -> String {
    let mut o = String::with_capacity(4096);
    let js = s.journal.stats();
    let t = &s.telemetry;
    let counters: [(&str, &str, u64); 29] = [
        (
            "shopbridge_journal_records_appended_total",
            "Records made durable in the journal.",
            js.appended_total,
        ),
        (
            "shopbridge_journal_commits_total",
            "Journal group commits.",
            js.commits_total,
        ),
        (
            "shopbridge_journal_commit_errors_total",
            "Journal commits that failed (the journal holds their records and retries, pausing collection).",
            js.commit_errors_total,
        ),
        (
            "shopbridge_journal_dropped_records_total",
            "Unacknowledged records removed because the journal reached its hard size cap.",
            js.dropped_total,
        ),
        (
            "shopbridge_journal_removed_records_total",
            "Acknowledged records removed by retention.",
            js.removed_total,
        ),
        (
            "shopbridge_driver_batches_total",
            "Batches received from drivers.",
            t.driver_batches_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_driver_events_total",
            "Observations and link events received from drivers.",
            t.driver_events_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_normalize_observations_total",
            "Observations normalized.",
            t.observations_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_normalize_state_changes_total",
            "Canonical machine state changes.",
            t.state_changes_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_normalize_intervals_total",
            "State intervals closed.",
            t.intervals_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_normalize_decode_errors_total",
            "Canonical signal values that were not one of their words (kept, flagged Uncertain).",
            t.decode_errors_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_normalize_conditions_total",
            "Condition reports (alarms, warnings, clears) normalized.",
            t.conditions_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_normalize_assets_total",
            "Asset changes (cutting tools, parts) normalized.",
            t.assets_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_pipeline_append_failed_records_total",
            "Records lost because the journal refused them.",
            t.append_failed_records_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_http_requests_total",
            "HTTP requests served.",
            t.http_requests_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_http_connections_refused_total",
            "HTTP connections closed at once because [http] max_connections were open.",
            t.http_connections_refused_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_opcua_logins_refused_total",
            "OPC UA logins refused (wrong password, unknown user, anonymous access off).",
            t.opcua_logins_refused_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_opcua_method_calls_total",
            "OPC UA method calls journaled.",
            t.opcua_method_calls_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_opcua_method_calls_refused_total",
            "OPC UA method calls refused (role, arguments, journal).",
            t.opcua_method_calls_refused_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_opcua_value_changes_total",
            "OPC UA node values changed (each notifies its subscribers).",
            t.opcua_value_changes_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_opcua_events_total",
            "OPC UA events raised (machine alarms and warnings, per notifier).",
            t.opcua_events_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_sparkplug_connects_total",
            "Sparkplug MQTT connections made (each with a new bdSeq).",
            t.sparkplug_connects_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_sparkplug_messages_total",
            "Sparkplug messages published (births, data, deaths).",
            t.sparkplug_messages_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_sparkplug_metrics_total",
            "Sparkplug metric values published in DDATA.",
            t.sparkplug_metrics_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_sparkplug_records_confirmed_total",
            "Journal records the MQTT broker confirmed receiving as Sparkplug data.",
            t.sparkplug_records_confirmed_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_sparkplug_rebirths_total",
            "Sparkplug rebirths done on a host's request.",
            t.sparkplug_rebirths_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_sparkplug_rebirths_suppressed_total",
            "Sparkplug rebirth requests ignored because they came within the cooldown.",
            t.sparkplug_rebirths_suppressed_total
                .load(Ordering::Relaxed),
        ),
        (
            "shopbridge_sparkplug_commands_total",
            "Sparkplug commands (NCMD, DCMD) carried out.",
            t.sparkplug_commands_total.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_sparkplug_commands_refused_total",
            "Sparkplug commands refused (unknown device or metric, undecodable, bad value).",
            t.sparkplug_commands_refused_total.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
    let gauges: [(&str, &str, u64); 7] = [
        (
            "shopbridge_sparkplug_online",
            "1 while the Sparkplug edge node is born and publishing; 0 while it waits for the broker or the primary host (the journal buffers meanwhile).",
            t.sparkplug_online.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_journal_last_seq",
            "Last durable sequence number.",
            js.last_seq,
        ),
        (
            "shopbridge_journal_first_seq",
            "First sequence number still stored.",
            js.first_seq,
        ),
        (
            "shopbridge_journal_bytes",
            "Encoded bytes of the records stored.",
            js.bytes,
        ),
        (
            "shopbridge_journal_file_bytes",
            "Size of the journal file on disk.",
            js.file_bytes,
        ),
        (
            "shopbridge_journal_held_records",
            "Records the journal holds because it cannot write them (a full disk); above zero, collection is paused.",
            js.held_records,
        ),
        (
            "shopbridge_process_resident_bytes",
            "Resident memory of the bridge process.",
            resident_bytes(),
        ),
    ];
    for (name, help, v) in gauges {
        family(&mut o, name, "gauge", help);
        let _ = writeln!(o, "{name} {v}");
    }
    family(
        &mut o,
        "shopbridge_journal_cursor_lag_records",
        "gauge",
        "Records a consumer has not yet read (live_view) or acknowledged (durable cursors).",
    );
    let _ = writeln!(
        o,
        "shopbridge_journal_cursor_lag_records{{cursor=\"live_view\"}} {}",
        js.last_seq.saturating_sub(s.live.position())
    );
    for (name, acked) in &js.cursors {
        let _ = writeln!(
            o,
            "shopbridge_journal_cursor_lag_records{{cursor=\"{}\"}} {}",
            label(name),
            js.last_seq.saturating_sub(*acked)
        );
    }
    family(
        &mut o,
        "shopbridge_machine_link_up",
        "gauge",
        "1 when the driver's link to the machine is up.",
    );
    let machines = s.live.snapshot();
    for m in &machines {
        let up = u8::from(m.link == Some(LinkStatus::Connected));
        let _ = writeln!(
            o,
            "shopbridge_machine_link_up{{machine=\"{}\"}} {up}",
            label(m.id.as_str())
        );
    }
    family(
        &mut o,
        "shopbridge_machine_state",
        "gauge",
        "1 for the machine's current shop state (RUN, IDLE, DOWN, OFF).",
    );
    for m in &machines {
        let _ = writeln!(
            o,
            "shopbridge_machine_state{{machine=\"{}\",state=\"{}\"}} 1",
            label(m.id.as_str()),
            m.state
        );
    }
    let clocks = t.clocks.read().map(|c| c.clone()).unwrap_or_default();
    family(
        &mut o,
        "shopbridge_machine_clock_offset_seconds",
        "gauge",
        "Estimated correction added to the machine's timestamps (negative: its clock is fast).",
    );
    for (m, c) in &clocks {
        if let Some(off) = c.offset_micros {
            let _ = writeln!(
                o,
                "shopbridge_machine_clock_offset_seconds{{machine=\"{}\"}} {}",
                label(m.as_str()),
                off as f64 / 1e6
            );
        }
    }
    family(
        &mut o,
        "shopbridge_machine_clock_jitter_seconds",
        "gauge",
        "How much the delay from the machine's timestamp to its arrival wanders.",
    );
    for (m, c) in &clocks {
        let _ = writeln!(
            o,
            "shopbridge_machine_clock_jitter_seconds{{machine=\"{}\"}} {}",
            label(m.as_str()),
            c.jitter_micros as f64 / 1e6
        );
    }
    let drivers = t.drivers.read().map(|d| d.clone()).unwrap_or_default();
    type Read = fn(&DriverCounters) -> u64;
    let counters: [(&str, &str, Read); 6] = [
        (
            "shopbridge_driver_messages_total",
            "Protocol units read from the source (SHDR lines, MTConnect documents).",
            |c| c.messages.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_driver_bytes_total",
            "Bytes read from the source.",
            |c| c.bytes.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_driver_bad_input_total",
            "Input that could not be understood and was skipped (each is logged, rate-limited).",
            |c| c.bad_input.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_driver_link_errors_total",
            "Failed connection attempts and lost links.",
            |c| c.link_errors.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_driver_gaps_total",
            "Holes in the source's data (agent restarts, buffer overruns), each recorded as a gap.",
            |c| c.gaps.load(Ordering::Relaxed),
        ),
        (
            "shopbridge_driver_device_errors_total",
            "Reads the device refused (Modbus exceptions, Haas error replies); the item is Bad until it answers.",
            |c| c.device_errors.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in counters {
        family(&mut o, name, "counter", help);
        for d in &drivers {
            let _ = writeln!(
                o,
                "{name}{{driver=\"{}\",source=\"{}\"}} {}",
                label(d.driver),
                label(&d.source),
                get(d)
            );
        }
    }
    o
}
