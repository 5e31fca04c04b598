use super::*;
use std::path::PathBuf;

fn shared(name: &str) -> Option<Vec<u8>> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/mtconnect")
        .join(name);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!(
                "skipping: {} is not readable ({e}); the shared captures live beside the project",
                p.display()
            );
            None
        }
    }
}

fn item<'a>(d: &'a Device, id: &str) -> &'a DataItemMeta {
    d.items
        .iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("no item {id} in {}", d.name))
}

#[test]
fn okuma_mazak_devices() {
    let Some(xml) = shared("okuma-mazak-devices.xml") else {
        return;
    };
    let devs = parse_devices(&xml).unwrap();
    let names: Vec<_> = devs.iter().map(|d| d.name.as_str()).collect();
    assert!(names.contains(&"OKUMA"), "{names:?}");
    let okuma = devs.iter().find(|d| d.name == "OKUMA").unwrap();
    assert_eq!(okuma.uuid.as_deref(), Some("OKUMA.123456"));
    assert_eq!(okuma.id, "OKUMA.123456");
    let avail = item(okuma, "Lavail");
    assert_eq!(avail.item_type, "AVAILABILITY");
    assert_eq!(avail.category, Some(ItemCategory::Event));
    assert_eq!(avail.component.as_deref(), Some("Device"));
    assert_eq!(avail.name.as_deref(), Some("avail"));
    let os = item(okuma, "OSMan");
    assert_eq!(os.sub_type.as_deref(), Some("MANUFACTURER"));
    // Items in components carry the component's type and name; every id is unique.
    assert!(okuma.items.len() > 50, "{}", okuma.items.len());
    assert!(
        okuma
            .items
            .iter()
            .any(|m| m.component.as_deref() == Some("Path")
                && m.component_name.as_deref() == Some("path"))
    );
    let exec = item(okuma, "Lpexecution");
    assert_eq!(exec.component.as_deref(), Some("Controller"));
    assert_eq!(exec.component_name.as_deref(), Some("Controller"));
    let mut ids: Vec<_> = okuma.items.iter().map(|m| m.id.as_str()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn fanuc_devices() {
    let Some(xml) = shared("fanuc-devices.xml") else {
        return;
    };
    let devs = parse_devices(&xml).unwrap();
    assert_eq!(devs.len(), 1);
    let d = &devs[0];
    assert_eq!((d.name.as_str(), d.id.as_str()), ("Fanuc-4Axis", "dev"));
    assert_eq!(d.uuid.as_deref(), Some("000"));
    let s = item(d, "c2");
    assert_eq!(s.item_type, "SPINDLE_SPEED");
    assert_eq!(s.sub_type.as_deref(), Some("ACTUAL"));
    assert_eq!(s.units.as_deref(), Some("REVOLUTION/MINUTE"));
    assert_eq!(s.category, Some(ItemCategory::Sample));
    assert_eq!(s.component.as_deref(), Some("Rotary"));
    assert_eq!(s.component_name.as_deref(), Some("C"));
    let servo = item(d, "servo");
    assert_eq!(servo.category, Some(ItemCategory::Condition));
    assert_eq!(servo.component.as_deref(), Some("Axes"));
    // `cm` has Constraints children; the item after it still belongs to the same component.
    assert_eq!(item(d, "spindle").component_name.as_deref(), Some("C"));
    assert!(
        d.items
            .iter()
            .any(|m| m.component.as_deref() == Some("Linear"))
    );
}

#[test]
fn haas_devices() {
    let Some(xml) = shared("haas-devices.xml") else {
        return;
    };
    let devs = parse_devices(&xml).unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].name, "Haas_1");
    let s1 = item(&devs[0], "s1");
    assert_eq!(s1.item_type, "SPINDLE_SPEED");
    assert_eq!(s1.component.as_deref(), Some("Rotary"));
    assert_eq!(item(&devs[0], "x1").component_name.as_deref(), Some("X"));
}

#[test]
fn devices_2x_with_agent_and_generic_components() {
    let xml = br#"<?xml version="1.0"?>
<MTConnectDevices xmlns="urn:mtconnect.org:MTConnectDevices:2.3">
 <Header instanceId="5" bufferSize="10" version="2.3"/>
 <Devices>
  <Agent id="agent_1" name="Agent" uuid="agent-uuid">
   <DataItems><DataItem category="EVENT" id="agent_avail" type="AVAILABILITY"/></DataItems>
  </Agent>
  <Device id="m1" name="Mill" uuid="mill-1">
   <Components>
    <Component id="c1" type="Controller" name="ctl">
     <DataItems><DataItem category="EVENT" id="mode" type="CONTROLLER_MODE"/></DataItems>
    </Component>
    <Controller id="c2"><Components><Path id="p1" name="path1"><DataItems>
      <DataItem category="SAMPLE" id="pos" type="PATH_POSITION" representation="TIME_SERIES"/>
    </DataItems></Path></Components></Controller>
   </Components>
  </Device>
 </Devices>
</MTConnectDevices>"#;
    let devs = parse_devices(xml).unwrap();
    assert_eq!(devs.len(), 2);
    assert!(devs[0].agent);
    assert_eq!(devs[0].items[0].component.as_deref(), Some("Agent"));
    assert!(!devs[1].agent);
    let mode = item(&devs[1], "mode");
    assert_eq!(mode.component.as_deref(), Some("Controller"));
    assert_eq!(mode.component_name.as_deref(), Some("ctl"));
    let pos = item(&devs[1], "pos");
    assert_eq!(pos.component.as_deref(), Some("Path"));
    assert_eq!(pos.representation.as_deref(), Some("TIME_SERIES"));
}

const STREAMS_13: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<MTConnectStreams xmlns:m="urn:mtconnect.org:MTConnectStreams:1.3" xmlns="urn:mtconnect.org:MTConnectStreams:1.3">
  <Header creationTime="2024-05-01T12:00:00Z" sender="a" instanceId="1700000000" version="1.3.0" bufferSize="131072" nextSequence="105" firstSequence="1" lastSequence="104"/>
  <Streams>
    <DeviceStream name="VMC-3Axis" uuid="000">
      <ComponentStream component="Rotary" name="C" componentId="c">
        <Samples>
          <SpindleSpeed dataItemId="c2" timestamp="2024-05-01T12:00:00.123456Z" name="Sspeed" sequence="100" subType="ACTUAL">1234.5</SpindleSpeed>
          <Load dataItemId="c4" timestamp="2024-05-01T12:00:00Z" sequence="101">UNAVAILABLE</Load>
        </Samples>
      </ComponentStream>
      <ComponentStream component="Controller" name="controller" componentId="cn1">
        <Events>
          <Execution dataItemId="exec" timestamp="2024-05-01T12:00:01.5Z" sequence="102">ACTIVE</Execution>
          <PartCount dataItemId="pc" timestamp="2024-05-01T12:00:01Z" sequence="103">42</PartCount>
          <Program dataItemId="prog" timestamp="2024-05-01T12:00:01Z" sequence="104">0042 &amp; O1&#x41;</Program>
          <Block dataItemId="blk" timestamp="2024-05-01T12:00:01Z" sequence="99"/>
        </Events>
        <Condition>
          <Fault dataItemId="servo" timestamp="2024-05-01T12:00:02Z" sequence="98" type="ACTUATOR" nativeCode="1012" nativeSeverity="2" qualifier="HIGH">SPINDLE OVERLOAD</Fault>
          <Normal dataItemId="sys" timestamp="2024-05-01T12:00:02Z" sequence="97" type="SYSTEM"/>
          <Unavailable dataItemId="logic" timestamp="2024-05-01T12:00:02Z" sequence="96" type="LOGIC_PROGRAM"/>
        </Condition>
      </ComponentStream>
    </DeviceStream>
  </Streams>
</MTConnectStreams>"#;

#[test]
fn streams_13_values_and_conditions() {
    let (h, obs) = collect_streams(STREAMS_13.as_bytes()).unwrap();
    assert_eq!(
        h,
        StreamsHeader {
            instance_id: 1_700_000_000,
            first_sequence: 1,
            last_sequence: 104,
            next_sequence: 105,
            buffer_size: 131_072
        }
    );
    assert_eq!(obs.len(), 9);
    let by = |id: &str| obs.iter().find(|o| o.data_item_id == id).unwrap();
    let s = by("c2");
    assert_eq!(s.device, "VMC-3Axis");
    assert_eq!(s.kind, ObsKind::Sample);
    assert_eq!(s.value, Value::Float(1234.5));
    assert_eq!(s.sequence, Some(100));
    assert_eq!(s.name.as_deref(), Some("Sspeed"));
    assert_eq!(s.sub_type.as_deref(), Some("ACTUAL"));
    assert_eq!(
        s.timestamp,
        Some(Timestamp::parse_rfc3339("2024-05-01T12:00:00.123456Z").unwrap())
    );
    assert_eq!(by("c4").value, Value::Unavailable);
    assert_eq!(by("exec").value, Value::text("ACTIVE"));
    assert_eq!(by("exec").kind, ObsKind::Event);
    assert_eq!(by("pc").value, Value::Int(42));
    // Leading zeros stay text; entities are resolved and spaces around them kept.
    assert_eq!(by("prog").value, Value::text("0042 & O1A"));
    assert_eq!(by("blk").value, Value::text(""));
    let f = by("servo");
    assert_eq!(f.kind, ObsKind::Condition(ConditionLevel::Fault));
    assert_eq!(f.text, "SPINDLE OVERLOAD");
    assert_eq!(f.native_code.as_deref(), Some("1012"));
    assert_eq!(f.native_severity.as_deref(), Some("2"));
    assert_eq!(f.qualifier.as_deref(), Some("HIGH"));
    assert_eq!(f.asset_type, None);
    assert_eq!(by("sys").kind, ObsKind::Condition(ConditionLevel::Normal));
    assert_eq!(by("logic").value, Value::Unavailable);
}

#[test]
fn streams_2x_series_sets_tables_assets() {
    let xml = r#"<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:2.3">
<Header instanceId="7" bufferSize="16" nextSequence="20" firstSequence="5" lastSequence="19"/>
<Streams><DeviceStream name="Mill" uuid="mill-1"><ComponentStream component="Path" componentId="p1">
<Samples>
 <PathPositionTimeSeries dataItemId="pts" timestamp="2024-05-01T12:00:00Z" sequence="10" sampleCount="3">1 2.5 3</PathPositionTimeSeries>
</Samples>
<Events>
 <VariableDataSet dataItemId="vars" timestamp="2024-05-01T12:00:00Z" sequence="11" count="3"><Entry key="a">1</Entry><Entry key="b"> two words </Entry><Entry key="c" removed="true"/></VariableDataSet>
 <ToolOffsetTable dataItemId="tt" timestamp="2024-05-01T12:00:00Z" sequence="12"><Entry key="T1"><Cell key="LENGTH">10.5</Cell><Cell key="DIAMETER">6</Cell></Entry><Entry key="T2" removed="true"/></ToolOffsetTable>
 <AssetChanged dataItemId="ac" timestamp="2024-05-01T12:00:00Z" sequence="13" assetType="CuttingTool">T1.1</AssetChanged>
 <AssetRemoved dataItemId="ar" timestamp="2024-05-01T12:00:00Z" sequence="14" assetType="CuttingTool">T0.9</AssetRemoved>
 <Message dataItemId="msg" timestamp="2024-05-01T12:00:00+02:00" sequence="15" nativeCode="M1">door open</Message>
</Events>
</ComponentStream></DeviceStream></Streams></MTConnectStreams>"#;
    let (h, obs) = collect_streams(xml.as_bytes()).unwrap();
    assert_eq!((h.first_sequence, h.next_sequence), (5, 20));
    let by = |id: &str| obs.iter().find(|o| o.data_item_id == id).unwrap();
    assert_eq!(by("pts").value, Value::text("1 2.5 3"));
    assert_eq!(by("pts").sample_count, Some(3));
    assert_eq!(by("vars").value, Value::text(r#"a=1 b="two words" c="#));
    assert_eq!(
        by("tt").value,
        Value::text("T1={LENGTH=10.5 DIAMETER=6} T2=")
    );
    assert_eq!(by("ac").element, "AssetChanged");
    assert_eq!(by("ac").asset_type.as_deref(), Some("CuttingTool"));
    assert_eq!(by("ac").text, "T1.1");
    assert_eq!(by("ar").element, "AssetRemoved");
    assert_eq!(by("msg").native_code.as_deref(), Some("M1"));
    assert_eq!(
        by("msg").timestamp,
        Some(Timestamp::parse_rfc3339("2024-05-01T10:00:00Z").unwrap())
    );
}

#[test]
fn error_documents_1x_and_2x() {
    let v1 = br#"<?xml version="1.0"?><MTConnectError xmlns="urn:mtconnect.org:MTConnectError:1.3">
<Header instanceId="1" bufferSize="10"/><Errors><Error errorCode="OUT_OF_RANGE">'from' must be greater than 100</Error></Errors></MTConnectError>"#;
    let e = parse_streams(v1, &mut Collect::default()).unwrap_err();
    assert!(e.is_out_of_range(), "{e}");
    assert_eq!(
        e.to_string(),
        "the agent answered with an error: OUT_OF_RANGE: 'from' must be greater than 100"
    );
    let v2 = br#"<MTConnectError xmlns="urn:mtconnect.org:MTConnectError:2.6"><Header/>
<Errors><OutOfRange><ErrorMessage>from out of range</ErrorMessage><URI>/sample</URI>
<QueryParameter name="from"><Value>3</Value><Minimum>5</Minimum></QueryParameter></OutOfRange>
<InvalidRequest><ErrorMessage>bad &amp; worse</ErrorMessage></InvalidRequest></Errors></MTConnectError>"#;
    let e = parse_error(v2);
    assert_eq!(
        e,
        XmlError::Agent(vec![
            AgentError {
                code: ErrorCode::OutOfRange,
                message: "from out of range".into()
            },
            AgentError {
                code: ErrorCode::InvalidRequest,
                message: "bad & worse".into()
            }
        ])
    );
    // An error where devices were expected is still the agent's error.
    let e = parse_devices(v1).unwrap_err();
    assert!(e.is_out_of_range());
    assert_eq!(ErrorCode::parse("NO_DEVICE"), ErrorCode::NoDevice);
    assert_eq!(ErrorCode::parse("NoDevice"), ErrorCode::NoDevice);
}

#[test]
fn broken_documents_are_errors() {
    assert_eq!(
        parse_streams(b"", &mut Collect::default()),
        Err(XmlError::Empty)
    );
    let cut = &STREAMS_13.as_bytes()[..STREAMS_13.len() / 2];
    assert!(parse_streams(cut, &mut Collect::default()).is_err());
    assert!(matches!(
        parse_streams(b"<html><body>502</body></html>", &mut Collect::default()),
        Err(XmlError::UnexpectedRoot { .. })
    ));
    let no_next = STREAMS_13.replace("nextSequence=\"105\"", "");
    assert_eq!(
        parse_streams(no_next.as_bytes(), &mut Collect::default()),
        Err(XmlError::MissingHeader("nextSequence"))
    );
    let bad = STREAMS_13.replace("nextSequence=\"105\"", "nextSequence=\"x\"");
    assert!(matches!(
        parse_streams(bad.as_bytes(), &mut Collect::default()),
        Err(XmlError::BadHeader {
            attribute: "nextSequence",
            ..
        })
    ));
    let mismatched = STREAMS_13.replace("</Execution>", "</Exec>");
    assert!(matches!(
        parse_streams(mismatched.as_bytes(), &mut Collect::default()),
        Err(XmlError::Malformed { .. })
    ));
}

#[test]
fn clean_numbers() {
    assert_eq!(typed_value("42"), Value::Int(42));
    assert_eq!(typed_value("-7"), Value::Int(-7));
    assert_eq!(typed_value("0"), Value::Int(0));
    assert_eq!(typed_value("0.25"), Value::Float(0.25));
    assert_eq!(typed_value("-1.5e3"), Value::Float(-1500.0));
    for t in [
        "007", "+5", "1.", ".5", "inf", "NaN", "1e", "12a", "", "-", "O1234", "1 2",
    ] {
        assert_eq!(typed_value(t), Value::text(t), "{t}");
    }
    assert_eq!(
        typed_value("99999999999999999999"),
        Value::text("99999999999999999999")
    );
}

#[test]
fn fast_timestamps_agree_with_rfc3339() {
    for s in [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00.1Z",
        "2024-02-29T23:59:59.999999Z",
        "1999-12-31T00:00:00.1234567Z",
        "2026-01-01T00:00:00.000001Z",
        "1970-01-01T00:00:00Z",
    ] {
        assert_eq!(
            Timestamp::parse_iso8601(s),
            Timestamp::parse_rfc3339(s).ok(),
            "{s}"
        );
    }
    assert_eq!(
        parse_timestamp("2024-05-01T12:00:00"),
        parse_timestamp("2024-05-01T12:00:00Z")
    );
    assert_eq!(parse_timestamp("yesterday"), None);
    assert_eq!(parse_timestamp("2024-13-01T12:00:00Z"), None);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let _ = parse_streams(&bytes, &mut Collect::default());
        let _ = parse_devices(&bytes);
        let _ = parse_error(&bytes);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = parse_timestamp(s);
            let _ = typed_value(s);
        }
    }

    #[test]
    fn mutated_documents_never_panic(cut in 0usize..3000, byte in proptest::num::u8::ANY, at in 0usize..3000) {
        let mut doc = STREAMS_13.as_bytes().to_vec();
        let at = at % doc.len();
        doc[at] = byte;
        doc.truncate(cut.max(1));
        let _ = parse_streams(&doc, &mut Collect::default());
        let _ = parse_devices(&doc);
    }
}
