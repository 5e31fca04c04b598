use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::*;
use crate::clock::Clock;
use crate::drivers::shdr::{self, Data, Parser, ShdrItem, ShdrSpec};
use crate::drivers::{DriverContext, DriverCounters, DriverEvent};
use crate::model::{ConditionLevel, LinkStatus, Timestamp};
use crate::sim::shop::{self as shop_mod, ShopOptions};

fn options(machines: usize) -> ShopOptions {
    ShopOptions {
        machines,
        seed: 11,
        start: Timestamp::parse_rfc3339("2026-11-24T08:00:00Z").unwrap_or_default(),
        shop_offset_micros: 0,
        skews: vec![(1, 90_000_000)],
    }
}

/// Reads lines until one satisfies `want`, or panics after 5 s.
async fn line_where(
    lines: &mut Lines<BufReader<OwnedReadHalf>>,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(l))) if want(&l) => return l,
            Ok(Ok(Some(_))) => {}
            other => panic!("no such line: {other:?}"),
        }
    }
}

#[tokio::test]
async fn clients_get_header_snapshot_and_pongs() {
    let (shop, _runner) = SimShop::new(&options(2));
    let okuma = &shop.machines()[1];
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let face = tokio::spawn(serve(listener, shop.clone(), 1, stop.clone()));

    // Two clients at once, each with the whole greeting.
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (rd, wr) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        clients.push((BufReader::new(rd).lines(), wr));
    }
    for (lines, wr) in &mut clients {
        let mut head = Vec::new();
        for _ in 0..7 {
            match tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await {
                Ok(Ok(Some(l))) => head.push(l),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(head[0], format!("* uuid: {}", okuma.uuid));
        assert_eq!(head[1], format!("* device: {}", okuma.device));
        assert_eq!(head[2], format!("* nativeName: {}", okuma.name));
        assert_eq!(head[3], "* shdrVersion: 2");
        assert!(head[4].starts_with("* adapterVersion: shopbridge-sim "));
        // The snapshot: every plain value on one line stamped with the machine's (skewed,
        // 90 s ahead) clock, then the condition on its own line.
        let stamp = "2026-11-24T08:01:30.000000Z";
        assert!(head[5].starts_with(&format!("{stamp}|")), "{}", head[5]);
        assert!(head[5].contains("|pexecution|"), "{}", head[5]);
        assert_eq!(head[6], format!("{stamp}|system|NORMAL||||"));

        wr.write_all(b"* PING\r\n").await.expect("ping");
        line_where(lines, |l| l == "* PONG 10000").await;
    }
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(2), face).await {
        Ok(r) => r.expect("face task"),
        Err(_) => panic!("face did not stop within 2 s"),
    }
    // The clients see the connection close.
    for (lines, _) in &mut clients {
        let r = tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await;
        assert!(matches!(r, Ok(Ok(None)) | Ok(Err(_))), "{r:?}");
    }
}

#[tokio::test]
async fn the_bridge_driver_reads_the_face() {
    let o = options(2);
    let (shop, runner) = SimShop::new(&o);
    let okuma = &shop.machines()[1];
    let clock = Clock::scaled(o.start, 600.0);
    let stop = CancellationToken::new();
    let shop_task = tokio::spawn(shop_mod::run(
        runner,
        clock.clone(),
        None,
        None,
        stop.clone(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let face = tokio::spawn(serve(listener, shop.clone(), 1, stop.clone()));

    let spec = ShdrSpec {
        address: address.clone(),
        heartbeat: None,
        machines: vec![(okuma.id.clone(), None)],
        items: okuma
            .items
            .iter()
            .map(|m| (m.id.clone(), m.clone()))
            .collect::<HashMap<_, _>>(),
    };
    let (tx, mut rx) = mpsc::channel(64);
    let counters = DriverCounters::new("shdr", address);
    let ctx = DriverContext {
        machines: vec![okuma.id.clone()],
        tx,
        shutdown: stop.clone(),
        clock,
        counters: counters.clone(),
    };
    let driver = tokio::spawn(shdr::run(spec, ctx));

    // Two simulated hours at 600× are 12 s; one second of wall time is 10 simulated minutes.
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(b)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        events.extend(b);
    }
    stop.cancel();
    for t in [driver, face, shop_task] {
        let r = tokio::time::timeout(Duration::from_secs(3), t).await;
        assert!(matches!(r, Ok(Ok(()))), "a task did not stop: {r:?}");
    }

    assert!(matches!(
        events.first(),
        Some(DriverEvent::Link {
            status: LinkStatus::Connected,
            ..
        })
    ));
    assert_eq!(
        counters
            .bad_input
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let obs: Vec<&crate::drivers::RawObservation> = events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Observation(o) => Some(o),
            _ => None,
        })
        .collect();
    let uuid = obs.iter().find(|o| o.key.as_str() == "adapter.uuid");
    assert_eq!(uuid.map(|o| o.value.to_string()), Some(okuma.uuid.clone()));
    // Every data item arrives with its metadata, and the machine keeps talking after the
    // snapshot (spindle samples change every few seconds of shop time).
    let exec = obs
        .iter()
        .find(|o| o.key.as_str() == "pexecution")
        .and_then(|o| o.meta.as_ref());
    assert_eq!(exec.map(|m| m.item_type.as_str()), Some("EXECUTION"));
    assert!(
        obs.iter()
            .filter(|o| !o.key.as_str().starts_with("adapter."))
            .all(|o| o.meta.is_some() && o.source_time.is_some())
    );
    let items = okuma.items.len();
    assert!(
        obs.len() > items * 3,
        "{} observations for {items} items: the changes did not stream",
        obs.len()
    );
    let system = events.iter().find_map(|e| match e {
        DriverEvent::Condition(c) if c.key.as_str() == "system" => Some(c),
        _ => None,
    });
    assert!(
        system.is_some_and(|c| matches!(
            c.level,
            ConditionLevel::Normal | ConditionLevel::Fault | ConditionLevel::Unavailable
        ) && c.meta.is_some()),
        "{system:?}"
    );
    // The machine's clock runs 90 s ahead of the shop's: source times show it (the snapshot
    // is stamped with the machine's clock when the client connected).
    let first = obs
        .iter()
        .find_map(|o| o.source_time)
        .map_or(0, |t| t.as_micros() - o.start.as_micros());
    assert!(
        (90_000_000..150_000_000).contains(&first),
        "first source time {first} µs after the shop's start"
    );
}

#[test]
fn fields_read_back_as_written() {
    for text in [
        "plain",
        "a|b",
        r"C:\NC\O1.MIN",
        "\"quoted\" start",
        "\"",
        r#""a\|b""#,
        "ends with \\",
        "two\nlines",
    ] {
        let mut line = String::from("|k|");
        push_field(&mut line, text);
        line.push_str("|next|1");
        let mut p = Parser::new();
        let mut out = Vec::new();
        assert_eq!(p.push_line(&line, &mut out), Ok(()), "{line}");
        let got = match &out[..] {
            [ShdrItem::Data(d), ShdrItem::Data(next)] if next.key == "next" => match &d.data {
                Data::Value(v) => v.to_string(),
                other => panic!("{other:?}"),
            },
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(got, text.replace('\n', " "), "written as {line}");
    }
}
