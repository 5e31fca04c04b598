use super::*;

/// The real Okuma OSP-P300 capture (third-party data: read in place, never copied).
const OKUMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/mtconnect/okuma-osp-p300.shdr"
);

/// Everything one line says, owned, for assertions.
fn parse_all(p: &mut Parser, text: &str) -> (Vec<ShdrItem<'static>>, Vec<ShdrError>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for line in text.split('\n') {
        let mut out = Vec::new();
        if let Err(e) = p.push_line(line, &mut out) {
            errors.push(e);
        }
        items.extend(out.into_iter().map(owned));
    }
    (items, errors)
}

fn one(line: &str) -> (Vec<ShdrItem<'static>>, Option<ShdrError>) {
    let mut p = Parser::new();
    let mut out = Vec::new();
    let r = p.push_line(line, &mut out);
    (out.into_iter().map(owned).collect(), r.err())
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn cow(c: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(c.into_owned())
}

fn owned(i: ShdrItem<'_>) -> ShdrItem<'static> {
    match i {
        ShdrItem::Data(d) => ShdrItem::Data(DataItem {
            time: d.time,
            device: d.device.map(leak),
            key: leak(d.key),
            data: match d.data {
                Data::Value(v) => Data::Value(v),
                Data::Condition(c) => Data::Condition(Condition {
                    level: c.level,
                    native_code: c.native_code.map(cow),
                    native_severity: c.native_severity.map(cow),
                    qualifier: c.qualifier.map(cow),
                    message: c.message.map(cow),
                }),
                Data::Message { native_code, text } => Data::Message {
                    native_code: native_code.map(cow),
                    text,
                },
                Data::TimeSeries {
                    count,
                    rate,
                    values,
                } => Data::TimeSeries {
                    count,
                    rate,
                    values,
                },
            },
        }),
        ShdrItem::Asset(a) => ShdrItem::Asset(match a {
            AssetItem::Changed {
                time,
                id,
                asset_type,
                document,
            } => AssetItem::Changed {
                time,
                id: cow(id),
                asset_type: asset_type.map(cow),
                document: cow(document),
            },
            AssetItem::Removed { time, id } => AssetItem::Removed { time, id: cow(id) },
            AssetItem::RemovedAll { time, asset_type } => AssetItem::RemovedAll {
                time,
                asset_type: asset_type.map(cow),
            },
        }),
        ShdrItem::Command(c) => ShdrItem::Command(match c {
            Command::Pong { heartbeat } => Command::Pong { heartbeat },
            Command::Ping => Command::Ping,
            Command::Set { name, value } => Command::Set {
                name: leak(name),
                value: leak(value),
            },
        }),
    }
}

fn values_of<'a>(items: &'a [ShdrItem<'static>], key: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter_map(|i| match i {
            ShdrItem::Data(DataItem {
                key: k,
                data: Data::Value(v),
                ..
            }) if *k == key => Some(v),
            _ => None,
        })
        .collect()
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap_or_else(|e| panic!("{e}"))
}

fn text(s: &str) -> Value {
    Value::text(s)
}

#[test]
fn okuma_capture_reads_as_the_agent_reads_it() {
    let Ok(capture) = std::fs::read_to_string(OKUMA) else {
        eprintln!("skipped: {OKUMA} is absent (shared/data is not checked out beside the repo)");
        return;
    };
    let mut p = Parser::new();
    let (items, errors) = parse_all(&mut p, &capture);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!p.in_multiline());
    assert_eq!(
        p.lines(),
        10_771,
        "10,770 lines and the empty tail after the last \\n"
    );

    // Every key|value pair (counted independently with awk) and every condition line.
    let data: Vec<&DataItem> = items
        .iter()
        .filter_map(|i| match i {
            ShdrItem::Data(d) => Some(d),
            _ => None,
        })
        .collect();
    let values = data
        .iter()
        .filter(|d| matches!(d.data, Data::Value(_)))
        .count();
    assert_eq!(values, 25_467);
    assert!(data.iter().all(|d| d.time.is_some() && d.device.is_none()));

    assert_eq!(
        values_of(&items, "pprogram"),
        [
            "IMTS-2022-2-HOB.MIN",
            "IMTS-2022-1E-mm.MIN",
            "IMTS-2022-4B-mm.MIN",
            "IMTS-2022-3-TRAN.MIN"
        ]
        .map(text)
        .iter()
        .collect::<Vec<_>>()
    );
    let exec: Vec<String> = values_of(&items, "pexecution")
        .iter()
        .map(|v| v.to_string())
        .collect();
    let cycle = ["READY", "ACTIVE", "PROGRAM_COMPLETED", "READY"];
    assert_eq!(exec, cycle.repeat(4));
    assert_eq!(
        values_of(&items, "ppartcount"),
        [0, 1, 0, 1, 2, 3, 0, 1]
            .map(Value::Int)
            .iter()
            .collect::<Vec<_>>()
    );
    // Clean numbers are numbers; even an identifier that looks like one prints back as sent.
    assert!(values_of(&items, "X1actm").contains(&&Value::Float(5742.856)));
    let tool = values_of(&items, "p1ToolAssetId");
    assert!(tool.contains(&&Value::Float(123456.2206)), "{tool:?}");
    assert!(tool.iter().any(|v| v.to_string() == "123456.2206"));
    assert!(values_of(&items, "p1PalletID").contains(&&Value::Unavailable));
    assert!(values_of(&items, "p1ProgramHeader").contains(&&text("")));

    // Condition lines (`*_cond` and `system`): found by the heuristic, all NORMAL.
    let conds: Vec<&DataItem> = data
        .iter()
        .copied()
        .filter(|d| matches!(d.data, Data::Condition(_)))
        .collect();
    assert_eq!(conds.len(), 40);
    assert!(
        conds
            .iter()
            .all(|c| c.key.ends_with("_cond") || c.key == "system")
    );
    assert!(conds.iter().all(|c| matches!(
        &c.data,
        Data::Condition(Condition {
            level: ConditionLevel::Normal,
            native_code: None,
            message: None,
            ..
        })
    )));
    assert_eq!(
        conds[0].time,
        Some(ts("2022-08-08T13:51:34.716714Z")),
        "7 fraction digits are cut to microseconds"
    );

    // Assets: 118 multi-line documents, 30 removals, 4 remove-alls.
    let mut changed = 0;
    let mut removed = Vec::new();
    let mut removed_all = 0;
    for i in &items {
        match i {
            ShdrItem::Asset(AssetItem::Changed {
                id,
                asset_type,
                document,
                time,
            }) => {
                changed += 1;
                assert_eq!(asset_type.as_deref(), Some("CuttingTool"));
                assert!(time.is_some());
                assert!(document.starts_with("<CuttingTool"), "{document}");
                assert!(document.ends_with("</CuttingTool>"), "{document}");
                assert!(document.contains(&format!("assetId=\"{id}\"")), "{id}");
            }
            ShdrItem::Asset(AssetItem::Removed { id, .. }) => removed.push(id.to_string()),
            ShdrItem::Asset(AssetItem::RemovedAll { asset_type, .. }) => {
                removed_all += 1;
                assert_eq!(asset_type.as_deref(), Some("CuttingTool"));
            }
            _ => {}
        }
    }
    assert_eq!((changed, removed.len(), removed_all), (118, 30, 4));
    assert_eq!(removed[0], "123456.8003");

    // The adapter's `*adapterVersion:UNAVAILABLE` lines are commands.
    let cmds: Vec<&Command> = items
        .iter()
        .filter_map(|i| match i {
            ShdrItem::Command(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(cmds.len(), 9);
    assert_eq!(
        cmds[0],
        &Command::Set {
            name: "adapterVersion",
            value: "UNAVAILABLE"
        }
    );
}

#[test]
fn several_pairs_device_prefixes_and_values() {
    let (items, err) =
        one("2026-11-25T06:00:00Z|avail|AVAILABLE| m2:Xact | -12.5 |count|42|prog|O0001|tool|007");
    assert_eq!(err, None);
    let t = Some(ts("2026-11-25T06:00:00Z"));
    let expect = |device, key, v| {
        ShdrItem::Data(DataItem {
            time: t,
            device,
            key,
            data: Data::Value(v),
        })
    };
    assert_eq!(
        items,
        vec![
            expect(None, "avail", text("AVAILABLE")),
            expect(Some("m2"), "Xact", Value::Float(-12.5)),
            expect(None, "count", Value::Int(42)),
            expect(None, "prog", text("O0001")),
            expect(None, "tool", text("007")),
        ]
    );
}

#[test]
fn numbers_are_typed_only_when_exact() {
    let cases = [
        ("0", Value::Int(0)),
        ("-7", Value::Int(-7)),
        ("326.3", Value::Float(326.3)),
        ("0.05", Value::Float(0.05)),
        ("-0", text("-0")),
        ("0.000", text("0.000")),
        ("1e5", text("1e5")),
        ("+5", text("+5")),
        (".5", text(".5")),
        ("5.", text("5.")),
        ("123456.20", text("123456.20")),
        ("10.0.14393.0", text("10.0.14393.0")),
        ("99999999999999999999", text("99999999999999999999")),
        ("1234567890.123456", text("1234567890.123456")),
        ("NaN", text("NaN")),
        ("unavailable", Value::Unavailable),
    ];
    for (raw, want) in cases {
        let (items, err) = one(&format!("|k|{raw}"));
        assert_eq!(err, None, "{raw}");
        let got = match &items[..] {
            [ShdrItem::Data(d)] => d.data.clone(),
            other => panic!("{raw}: {other:?}"),
        };
        assert_eq!(got, Data::Value(want.clone()), "{raw}");
        if !matches!(want, Value::Unavailable) {
            assert_eq!(want.to_string(), raw, "typed values print back as sent");
        }
    }
}

#[test]
fn times_with_and_without_fraction_zone_duration_or_at_all() {
    let at = |line: &str| match one(line) {
        (items, None) => match &items[..] {
            [ShdrItem::Data(d)] => d.time,
            other => panic!("{line}: {other:?}"),
        },
        (_, Some(e)) => panic!("{line}: {e}"),
    };
    let t = Some(ts("2026-11-25T06:07:08Z"));
    assert_eq!(at("2026-11-25T06:07:08Z|k|1"), t);
    assert_eq!(at("2026-11-25T06:07:08|k|1"), t, "no zone means UTC");
    assert_eq!(at("2026-11-25T07:07:08+01:00|k|1"), t);
    assert_eq!(at("2026-11-25T05:07:08-0100|k|1"), t);
    assert_eq!(
        at("2026-11-25T06:07:08.5Z|k|1"),
        Some(ts("2026-11-25T06:07:08.500Z"))
    );
    assert_eq!(
        at("2026-11-25T06:07:08.123456789Z|k|1"),
        Some(ts("2026-11-25T06:07:08.123456Z"))
    );
    assert_eq!(at("2026-11-25T06:07:08Z@60.5|k|1"), t, "duration dropped");
    assert_eq!(at("2026-11-25T06:07:08Z@|k|1"), t, "bad duration ignored");
    assert_eq!(at("|k|1"), None, "empty time field");
    assert_eq!(at("  |k|1"), None);
    assert_eq!(at("123456.25|k|1"), None, "relative time");
    assert_eq!(at("k|1"), None, "no time field at all");
    assert_eq!(
        at("2024-02-29T00:00:00Z|k|1"),
        Some(ts("2024-02-29T00:00:00Z"))
    );
    assert_eq!(
        at("1969-12-31T23:59:59.5Z|k|1"),
        Some(ts("1969-12-31T23:59:59.5Z"))
    );

    // A date that is not one: the items still come, without a time, and the error says why.
    for bad in [
        "2026-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2026-11-25T06:07:08Q",
        "2026-11-25T06:07",
        "2026-11-25T24:00:00Z",
    ] {
        let (items, err) = one(&format!("{bad}|k|1"));
        assert_eq!(items.len(), 1, "{bad}");
        assert!(
            matches!(&err, Some(ShdrError::BadTimestamp { line: 1, found }) if found == bad),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn escapes_and_quotes_follow_cppagent() {
    let (items, err) = one(r#"|a|x\|y|b|"q \"r\" \| s"|c|C:\NC\O1.MIN|d| "open|e|"ok" "#);
    assert_eq!(err, None);
    let got: Vec<(String, String)> = items
        .iter()
        .map(|i| match i {
            ShdrItem::Data(DataItem {
                key,
                data: Data::Value(v),
                ..
            }) => (key.to_string(), v.to_string()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", "x|y"),
            ("b", "q \"r\" | s"),
            ("c", r"C:\NC\O1.MIN"),
            ("d", "\"open"),
            ("e", "ok"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

#[test]
fn conditions_by_shape_and_by_heuristic() {
    let fault = |key: &'static str| {
        ShdrItem::Data(DataItem {
            time: None,
            device: None,
            key,
            data: Data::Condition(Condition {
                level: ConditionLevel::Fault,
                native_code: Some("2001".into()),
                native_severity: Some("HIGH".into()),
                qualifier: None,
                message: Some("Spindle | overload".into()),
            }),
        })
    };
    // Heuristic: one key then five fields led by a level word.
    let (items, err) = one(r"|system|FAULT|2001|HIGH||Spindle \| overload");
    assert_eq!(err, None);
    assert_eq!(items, vec![fault("system")]);
    // Six fields are not a condition by heuristic: pairs.
    let (items, _) = one("|a|FAULT|b|1|c|2|d");
    assert!(
        items.iter().all(|i| matches!(
            i,
            ShdrItem::Data(DataItem {
                data: Data::Value(_),
                ..
            })
        )),
        "{items:?}"
    );

    // By shape: a condition among values, and a short one at the end of the line.
    let mut p = Parser::with_shapes([
        ("alarm".to_string(), ItemShape::Condition),
        ("msg".to_string(), ItemShape::Message),
        ("ts".to_string(), ItemShape::TimeSeries),
        ("v".to_string(), ItemShape::Value),
    ]);
    let mut out = Vec::new();
    let r = p.push_line(
        r"|v|1|alarm|FAULT|2001|HIGH||Spindle \| overload|v|2|alarm|normal",
        &mut out,
    );
    assert_eq!(r, Ok(()));
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(owned(out[1].clone()), fault("alarm"));
    assert!(matches!(
        &out[3],
        ShdrItem::Data(DataItem {
            data: Data::Condition(Condition {
                level: ConditionLevel::Normal,
                native_code: None,
                ..
            }),
            ..
        })
    ));

    // A bad level is reported; the rest of the line is still read.
    out.clear();
    let r = p.push_line("|alarm|BAD|1|2|3|4|v|3", &mut out);
    assert!(
        matches!(&r, Err(ShdrError::BadConditionLevel { key, found, .. }) if key == "alarm" && found == "BAD"),
        "{r:?}"
    );
    assert_eq!(out.len(), 1);

    // Messages and time series.
    out.clear();
    let r = p.push_line(
        "|msg|E42|Check coolant|ts|4|100| 1.0  1.1 1.2\t1.3 |msg||UNAVAILABLE|ts|||UNAVAILABLE",
        &mut out,
    );
    assert_eq!(r, Ok(()));
    let data: Vec<Data> = out
        .iter()
        .map(|i| match i {
            ShdrItem::Data(d) => d.data.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        data,
        vec![
            Data::Message {
                native_code: Some("E42".into()),
                text: text("Check coolant")
            },
            Data::TimeSeries {
                count: Some(4),
                rate: Some(100.0),
                values: text("1.0 1.1 1.2 1.3")
            },
            Data::Message {
                native_code: None,
                text: Value::Unavailable
            },
            Data::TimeSeries {
                count: None,
                rate: None,
                values: Value::Unavailable
            },
        ]
    );
}

#[test]
fn assets_single_and_multi_line() {
    let mut p = Parser::new();
    let (items, errors) = parse_all(
        &mut p,
        "2026-11-25T06:00:00Z|@ASSET@|T1|CuttingTool|<CuttingTool assetId=\"T1\">a|b</CuttingTool>\n\
         |@ASSET@|T2|CuttingTool|--multiline--XY\n\
         <CuttingTool assetId=\"T2\">\n\
           |not|a|line|\n\
         </CuttingTool>\n\
         --multiline--XY\n\
         |@REMOVE_ASSET@|T1\n\
         |@REMOVE_ALL_ASSETS@|\n\
         @REMOVE_ALL_ASSETS@|Fixture\n\
         |@UPDATE_ASSET@|T2|ToolLife|5\n\
         |@ASSET@|T3\n\
         |@REMOVE_ASSET@",
    );
    assert_eq!(
        items,
        vec![
            ShdrItem::Asset(AssetItem::Changed {
                time: Some(ts("2026-11-25T06:00:00Z")),
                id: "T1".into(),
                asset_type: Some("CuttingTool".into()),
                document: "<CuttingTool assetId=\"T1\">a|b</CuttingTool>".into(),
            }),
            ShdrItem::Asset(AssetItem::Changed {
                time: None,
                id: "T2".into(),
                asset_type: Some("CuttingTool".into()),
                document: "<CuttingTool assetId=\"T2\">\n|not|a|line|\n</CuttingTool>".into(),
            }),
            ShdrItem::Asset(AssetItem::Removed {
                time: None,
                id: "T1".into()
            }),
            ShdrItem::Asset(AssetItem::RemovedAll {
                time: None,
                asset_type: None
            }),
            ShdrItem::Asset(AssetItem::RemovedAll {
                time: None,
                asset_type: Some("Fixture".into())
            }),
        ]
    );
    assert!(
        matches!(&errors[..], [
            ShdrError::Unsupported { line: 10, what },
            ShdrError::BadAsset { line: 11, command: "@ASSET@", .. },
            ShdrError::BadAsset { line: 12, command: "@REMOVE_ASSET@", .. },
        ] if what.contains("@UPDATE_ASSET@")),
        "{errors:?}"
    );
}

#[test]
fn unterminated_multiline_asset_is_reported() {
    let mut p = Parser::new();
    let (items, errors) = parse_all(&mut p, "|@ASSET@|T9|CuttingTool|--multiline--Q\n<a>\n");
    assert!(items.is_empty() && errors.is_empty());
    assert!(p.in_multiline());
    assert!(matches!(
        p.reset(),
        Some(ShdrError::UnterminatedAsset { line: 1, ref asset_id, .. }) if asset_id == "T9"
    ));
    assert!(!p.in_multiline());
    assert_eq!(p.reset(), None);

    // One that grows past the limit is dropped, and the parser reads lines again after it.
    let big = "x".repeat(MAX_LINE / 2 + 1);
    let mut out = Vec::new();
    assert_eq!(
        p.push_line("|@ASSET@|T9|T|--multiline--Q", &mut out),
        Ok(())
    );
    assert_eq!(p.push_line(&big, &mut out), Ok(()));
    let r = p.push_line(&big, &mut out);
    assert!(
        matches!(r, Err(ShdrError::UnterminatedAsset { .. })),
        "{r:?}"
    );
    assert_eq!(p.push_line("|k|1", &mut out), Ok(()));
    assert_eq!(out.len(), 1);
}

#[test]
fn commands() {
    let cmd = |line: &str| match one(line) {
        (items, None) => match &items[..] {
            [ShdrItem::Command(c)] => c.clone(),
            other => panic!("{line}: {other:?}"),
        },
        (_, Some(e)) => panic!("{line}: {e}"),
    };
    assert_eq!(
        cmd("* PONG 10000"),
        Command::Pong {
            heartbeat: Some(Duration::from_secs(10))
        }
    );
    assert_eq!(cmd("* PONG"), Command::Pong { heartbeat: None });
    assert_eq!(cmd("* PONG abc"), Command::Pong { heartbeat: None });
    assert_eq!(cmd("* PING\r"), Command::Ping);
    assert_eq!(
        cmd("* uuid: 8c1b-44: x"),
        Command::Set {
            name: "uuid",
            value: "8c1b-44: x"
        }
    );
    assert_eq!(
        cmd("*adapterVersion:UNAVAILABLE"),
        Command::Set {
            name: "adapterVersion",
            value: "UNAVAILABLE"
        }
    );
    assert_eq!(
        cmd("2026-11-25T06:00:00Z|*manufacturer: Okuma"),
        Command::Set {
            name: "manufacturer",
            value: "Okuma"
        }
    );
    assert_eq!(
        cmd("* calibration"),
        Command::Set {
            name: "calibration",
            value: ""
        }
    );
}

#[test]
fn garbage_is_reported_not_fatal() {
    assert_eq!(one(""), (vec![], None));
    assert_eq!(one("   \r"), (vec![], None));
    assert_eq!(one("|"), (vec![], None));
    let (items, err) = one("|a|1|b");
    assert_eq!(items.len(), 1);
    assert!(matches!(err, Some(ShdrError::MissingValue { ref key, .. }) if key == "b"));
    let (items, err) = one("|a|1||2|c|3|");
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(err, Some(ShdrError::EmptyKey { ref value, .. }) if value == "2"));
    let (_, err) = one(&"x".repeat(MAX_LINE + 1));
    assert!(matches!(err, Some(ShdrError::LineTooLong { .. })));
    let (items, err) = one("2026-11-25T06:00:00Z");
    assert_eq!((items, err), (vec![], None));
}

#[test]
fn error_messages_name_the_line_and_what_was_expected() {
    let mut p = Parser::new();
    let mut out = Vec::new();
    let _ = p.push_line("|a|1", &mut out);
    let e = p.push_line("|system|BAD|1|2|3", &mut out);
    // Not a condition (its first field is no level word): pairs, and the last key lacks its value.
    assert_eq!(
        e.map_err(|e| e.to_string()),
        Err("line 2: key \"3\" has no value (the line ends after it)".to_string())
    );
    let mut p = Parser::with_shapes([("system".to_string(), ItemShape::Condition)]);
    let e = p.push_line("|system|BAD|1|2|3|4", &mut out);
    assert_eq!(
        e.map_err(|e| e.to_string()),
        Err("line 1: condition \"system\": expected a level NORMAL, WARNING, FAULT or UNAVAILABLE, found \"BAD\"".to_string())
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(lines in proptest::collection::vec(
        proptest::string::string_regex(r#"(\||\\|"|@|\*|:| |[A-Za-z0-9._-]|--multiline--|@ASSET@|@REMOVE_ASSET@|NORMAL|FAULT|UNAVAILABLE|2026-11-25T06:00:00(\.[0-9]{1,9})?Z?|é){0,40}"#)
            .unwrap_or_else(|e| panic!("{e}")),
        0..20,
    )) {
        let mut p = Parser::with_shapes([
            ("c".to_string(), ItemShape::Condition),
            ("m".to_string(), ItemShape::Message),
            ("t".to_string(), ItemShape::TimeSeries),
        ]);
        let mut out = Vec::new();
        for l in &lines {
            let _ = p.push_line(l, &mut out);
        }
        let _ = p.reset();
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let mut p = Parser::new();
        let mut out = Vec::new();
        for l in text.split('\n') {
            let _ = p.push_line(l, &mut out);
        }
    }

    #[test]
    fn exact_numbers_print_back_as_sent(i in proptest::prelude::any::<i64>(), f in -1.0e9f64..1.0e9) {
        for s in [i.to_string(), f.to_string(), format!("{f:.3}")] {
            if let Some(v) = exact_number(&s) {
                proptest::prop_assert_eq!(v.to_string(), s);
            }
        }
    }
}
