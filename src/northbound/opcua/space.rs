//! The shop's address space: every machine an OPC 40501 `MachineToolType` instance organized
//! by Machinery's `Objects/Machines`, plus shopbridge's `Context`, its methods and the raw
//! signals.
//!
//! ```text
//! Machines/<name>                      MachineToolType (+ HasInterface IShopFloorOperationsType)
//!   Identification                     Manufacturer, SerialNumber, ProductInstanceUri, Model, SoftwareRevision
//!   Monitoring/MachineTool             OperationMode, FeedOverride, MachineryItemState, MachineryOperationMode
//!   Monitoring/Channel1                ChannelMonitoringType: ChannelState, ChannelMode, FeedOverride, RapidOverride
//!   Monitoring/Spindle1                SpindleMonitoringType: IsRotating, Override
//!   Production/ActiveProgram           Name, NumberInList, State (ProductionProgramStateMachineType)
//!   Production/ProductionPlan          (jobs arrive with the context issue)
//!   Notification/Messages              event notifier: ConditionMessageEventType
//!   Equipment
//!   Context                            MachineContextType: job, operation, operator, loss category …
//!   Signals/<signal>                   every signal of the machine's profile, as normalized
//!   SetStopReason, SignIn, SignOut, ConfirmOperation
//! ```

use std::collections::BTreeMap;

use opcua::nodes::NodeType;
use opcua::server::address_space::AddressSpace;
use opcua::types::{
    DataValue, EUInformation, ExtensionObject, LocalizedText, NodeId, QualifiedName, Range,
    ReferenceTypeId, UAString, Variant,
};

use super::instantiate::Instantiator;
use crate::config::{Identification, MachineConfig};
use crate::model::{MachineId, Taxonomy};

pub const MACHINERY_URI: &str = "http://opcfoundation.org/UA/Machinery/";
pub const MACHINE_TOOL_URI: &str = "http://opcfoundation.org/UA/MachineTool/";
pub const DI_URI: &str = "http://opcfoundation.org/UA/DI/";
pub const SHOPBRIDGE_URI: &str = "urn:shopbridge:UA";

/// Namespace indexes, looked up by URI once the NodeSets are loaded.
#[derive(Clone, Copy, Debug)]
pub struct Ns {
    pub machinery: u16,
    pub machine_tool: u16,
    pub sb: u16,
}

impl Ns {
    pub fn find(space: &AddressSpace) -> Option<Ns> {
        Some(Ns {
            machinery: space.namespace_index(MACHINERY_URI)?,
            machine_tool: space.namespace_index(MACHINE_TOOL_URI)?,
            sb: space.namespace_index(SHOPBRIDGE_URI)?,
        })
    }
    pub fn machines_folder(&self) -> NodeId {
        NodeId::new(self.machinery, 1001u32)
    }
    pub fn message_event_type(&self) -> NodeId {
        NodeId::new(self.sb, 1003u32)
    }
    pub fn notification_event_type(&self) -> NodeId {
        NodeId::new(self.machine_tool, 35u32)
    }
}

/// A value a machine's node shows, as the feed computes it. The order is the order of
/// [`FIELDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    ItemState,
    ItemStateId,
    OperationModeState,
    OperationModeStateId,
    OperationMode,
    MachineFeedOverride,
    ChannelState,
    ChannelMode,
    ChannelFeedOverride,
    ChannelRapidOverride,
    SpindleIsRotating,
    SpindleOverride,
    ProgramName,
    ProgramState,
    ProgramStateId,
    JobId,
    OperationId,
    PartNumber,
    OperatorId,
    Shift,
    LossCategory,
    LossCategorySince,
    StopReason,
    StopReasonNote,
    PartsGood,
    PartsScrap,
    PartsRework,
    ObservedCycleTime,
    EstimatedCompletion,
}

/// Each field's node, relative to the machine.
pub const FIELDS: [(Field, &str); 29] = [
    (
        Field::ItemState,
        "Monitoring/MachineTool/MachineryItemState/CurrentState",
    ),
    (
        Field::ItemStateId,
        "Monitoring/MachineTool/MachineryItemState/CurrentState/Id",
    ),
    (
        Field::OperationModeState,
        "Monitoring/MachineTool/MachineryOperationMode/CurrentState",
    ),
    (
        Field::OperationModeStateId,
        "Monitoring/MachineTool/MachineryOperationMode/CurrentState/Id",
    ),
    (Field::OperationMode, "Monitoring/MachineTool/OperationMode"),
    (
        Field::MachineFeedOverride,
        "Monitoring/MachineTool/FeedOverride",
    ),
    (Field::ChannelState, "Monitoring/Channel1/ChannelState"),
    (Field::ChannelMode, "Monitoring/Channel1/ChannelMode"),
    (
        Field::ChannelFeedOverride,
        "Monitoring/Channel1/FeedOverride",
    ),
    (
        Field::ChannelRapidOverride,
        "Monitoring/Channel1/RapidOverride",
    ),
    (Field::SpindleIsRotating, "Monitoring/Spindle1/IsRotating"),
    (Field::SpindleOverride, "Monitoring/Spindle1/Override"),
    (Field::ProgramName, "Production/ActiveProgram/Name"),
    (
        Field::ProgramState,
        "Production/ActiveProgram/State/CurrentState",
    ),
    (
        Field::ProgramStateId,
        "Production/ActiveProgram/State/CurrentState/Id",
    ),
    (Field::JobId, "Context/JobId"),
    (Field::OperationId, "Context/OperationId"),
    (Field::PartNumber, "Context/PartNumber"),
    (Field::OperatorId, "Context/OperatorId"),
    (Field::Shift, "Context/Shift"),
    (Field::LossCategory, "Context/LossCategory"),
    (Field::LossCategorySince, "Context/LossCategorySince"),
    (Field::StopReason, "Context/StopReason"),
    (Field::StopReasonNote, "Context/StopReasonNote"),
    (Field::PartsGood, "Context/PartsGood"),
    (Field::PartsScrap, "Context/PartsScrap"),
    (Field::PartsRework, "Context/PartsRework"),
    (Field::ObservedCycleTime, "Context/ObservedCycleTime"),
    (Field::EstimatedCompletion, "Context/EstimatedCompletion"),
];

/// The four methods every machine carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    SetStopReason,
    SignIn,
    SignOut,
    ConfirmOperation,
}

impl MethodKind {
    pub const ALL: [MethodKind; 4] = [
        MethodKind::SetStopReason,
        MethodKind::SignIn,
        MethodKind::SignOut,
        MethodKind::ConfirmOperation,
    ];
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::SetStopReason => "SetStopReason",
            MethodKind::SignIn => "SignIn",
            MethodKind::SignOut => "SignOut",
            MethodKind::ConfirmOperation => "ConfirmOperation",
        }
    }
}

/// The node ids of the state machines' states, shared by every instance.
#[derive(Clone, Debug, Default)]
pub struct States {
    pub item: BTreeMap<&'static str, NodeId>,
    pub operation_mode: BTreeMap<&'static str, NodeId>,
    pub program: BTreeMap<&'static str, NodeId>,
}

/// One machine's nodes.
#[derive(Clone, Debug)]
pub struct MachineNodes {
    pub id: MachineId,
    pub name: String,
    pub object: NodeId,
    pub messages: NodeId,
    /// Per [`FIELDS`] entry, its node (absent when the instance lacks it).
    pub fields: Vec<Option<NodeId>>,
    /// The profile's signals and their nodes.
    pub signals: BTreeMap<String, NodeId>,
    pub methods: Vec<(NodeId, MethodKind)>,
}

impl MachineNodes {
    pub fn field(&self, f: Field) -> Option<&NodeId> {
        self.fields.get(f as usize).and_then(|n| n.as_ref())
    }
}

/// Optional declarations every machine gets (paths relative to the machine); the nameplate's
/// optional entries only when known.
fn machine_optional(ident: &Identification, path: &str) -> bool {
    match path {
        "Identification/Model" => return ident.model.is_some(),
        "Identification/SoftwareRevision" => return ident.software_revision.is_some(),
        "Identification/Location" => return ident.location.is_some(),
        _ => {}
    }
    matches!(
        path,
        "Monitoring/MachineTool/FeedOverride"
            | "Monitoring/MachineTool/MachineryItemState"
            | "Monitoring/MachineTool/MachineryOperationMode"
            | "Production/ProductionPlan"
            | "Notification/Messages"
    )
}

/// Sets a node's value once, at build time.
fn set_static(inst: &mut Instantiator<'_>, path: &str, value: Variant) {
    let Some(id) = inst.made.get(path).cloned() else {
        return;
    };
    if let Some(NodeType::Variable(v)) = inst.space.find_mut(&id) {
        v.set_data_value(DataValue::new_now(value));
    }
}

/// Builds the machines into `space` (which already holds the imported NodeSets), reading
/// core declarations from `core`.
pub fn build(
    space: &mut AddressSpace,
    core: &AddressSpace,
    ns: Ns,
    machines: &[(MachineConfig, Vec<String>)],
    taxonomy: &Taxonomy,
    product_uri: &str,
) -> (Vec<MachineNodes>, States) {
    let mut inst = Instantiator::new(space, core, ns.sb);
    let mt = |i: u32| NodeId::new(ns.machine_tool, i);
    let machinery = |i: u32| NodeId::new(ns.machinery, i);
    let mut states = States::default();
    let item_type = machinery(1002);
    for s in ["NotAvailable", "OutOfService", "Executing", "NotExecuting"] {
        if let Some(id) = inst.child_of_type(&item_type, s) {
            states.item.insert(s, id);
        }
    }
    let mode_type = machinery(1008);
    for s in ["None", "Maintenance", "Setup", "Processing"] {
        if let Some(id) = inst.child_of_type(&mode_type, s) {
            states.operation_mode.insert(s, id);
        }
    }
    let program_type = mt(15);
    for s in ["Initializing", "Running", "Ended", "Interrupted", "Aborted"] {
        if let Some(id) = inst.child_of_type(&program_type, s) {
            states.program.insert(s, id);
        }
    }

    let mut out = Vec::with_capacity(machines.len());
    for (m, signals) in machines {
        inst.made.clear();
        let root = m.id.as_str().to_string();
        let object = inst.object(
            &ns.machines_folder(),
            NodeId::from(ReferenceTypeId::Organizes),
            QualifiedName::new(ns.sb, m.name.as_str()),
            &mt(13),
            &root,
            &|p| machine_optional(&m.identification, p),
        );
        let monitoring = inst.made.get(&format!("{root}/Monitoring")).cloned();
        if let Some(monitoring) = &monitoring {
            inst.object(
                monitoring,
                NodeId::from(ReferenceTypeId::HasComponent),
                QualifiedName::new(ns.sb, "Channel1"),
                &mt(16),
                &format!("{root}/Monitoring/Channel1"),
                &|p| p == "RapidOverride",
            );
            inst.object(
                monitoring,
                NodeId::from(ReferenceTypeId::HasComponent),
                QualifiedName::new(ns.sb, "Spindle1"),
                &mt(22),
                &format!("{root}/Monitoring/Spindle1"),
                &|p| p == "Override",
            );
        }
        let context = inst.object(
            &object,
            NodeId::from(ReferenceTypeId::HasComponent),
            QualifiedName::new(ns.sb, "Context"),
            &NodeId::new(ns.sb, 1001u32),
            &format!("{root}/Context"),
            &|_| true,
        );
        let _ = context;
        if let Some(totals) = inst
            .made
            .get(&format!("{root}/Context/LossTotals"))
            .cloned()
        {
            for c in taxonomy.categories() {
                inst.variable(
                    &totals,
                    QualifiedName::new(ns.sb, c.as_str()),
                    NodeId::new(0, 290u32),
                    &format!("{root}/Context/LossTotals/{}", c.as_str()),
                );
            }
        }
        // The operations interface and its methods.
        let iface = NodeId::new(ns.sb, 1002u32);
        inst.space
            .insert_reference(&object, &iface, NodeId::new(0, 17603u32));
        inst.members(&object, &root, &iface);
        let signals_folder = inst.object(
            &object,
            NodeId::from(ReferenceTypeId::HasComponent),
            QualifiedName::new(ns.sb, "Signals"),
            &NodeId::new(0, 61u32),
            &format!("{root}/Signals"),
            &|_| false,
        );
        let mut signal_nodes = BTreeMap::new();
        for s in signals {
            let id = inst.variable(
                &signals_folder,
                QualifiedName::new(ns.sb, s.as_str()),
                NodeId::new(0, 24u32),
                &format!("{root}/Signals/{s}"),
            );
            signal_nodes.insert(s.clone(), id);
        }

        // Events: Messages raises them (and the Server object relays them).
        let messages = inst
            .made
            .get(&format!("{root}/Notification/Messages"))
            .cloned()
            .unwrap_or_else(|| object.clone());
        if let Some(NodeType::Object(o)) = inst.space.find_mut(&messages) {
            o.set_event_notifier(opcua::nodes::EventNotifier::SUBSCRIBE_TO_EVENTS);
        }

        // The nameplate: what the configuration (or the simulator) says.
        let ident = &m.identification;
        let static_values: Vec<(&str, Option<String>)> = vec![
            ("Identification/Manufacturer", ident.manufacturer.clone()),
            ("Identification/Model", ident.model.clone()),
            ("Identification/SerialNumber", ident.serial_number.clone()),
            (
                "Identification/SoftwareRevision",
                ident.software_revision.clone(),
            ),
            ("Identification/Location", ident.location.clone()),
            (
                "Identification/ProductInstanceUri",
                Some(format!("{product_uri}/machines/{}", m.id)),
            ),
            ("Monitoring/Channel1/Name", Some("Channel1".into())),
            ("Monitoring/Spindle1/Name", Some("Spindle1".into())),
        ];
        for (path, v) in static_values {
            let Some(id) = inst.made.get(&format!("{root}/{path}")).cloned() else {
                continue;
            };
            if let Some(NodeType::Variable(var)) = inst.space.find_mut(&id) {
                let text = v.unwrap_or_default();
                let value = if var.data_type() == NodeId::new(0, 21u32) {
                    Variant::from(LocalizedText::new("", &text))
                } else {
                    Variant::from(text)
                };
                var.set_data_value(DataValue::new_now(value));
            }
        }
        // Overrides are percentages; the ranges are what controls commonly allow.
        let percent = EUInformation {
            namespace_uri: UAString::from("http://www.opcfoundation.org/UA/units/un/cefact"),
            unit_id: 20529, // UNECE "P1": percent
            display_name: LocalizedText::new("", "%"),
            description: LocalizedText::new("", "percent"),
        };
        for (path, high) in [
            ("Monitoring/MachineTool/FeedOverride", 200.0),
            ("Monitoring/Channel1/FeedOverride", 200.0),
            ("Monitoring/Channel1/RapidOverride", 100.0),
            ("Monitoring/Spindle1/Override", 200.0),
        ] {
            let props = [
                (
                    "EngineeringUnits",
                    Variant::from(ExtensionObject::from_message(percent.clone())),
                ),
                (
                    "EURange",
                    Variant::from(ExtensionObject::from_message(Range { low: 0.0, high })),
                ),
            ];
            for (prop, value) in props {
                set_static(&mut inst, &format!("{root}/{path}/{prop}"), value);
            }
        }
        set_static(
            &mut inst,
            &format!("{root}/Production/ActiveProgram/NumberInList"),
            Variant::from(0u16),
        );
        let fields = FIELDS
            .iter()
            .map(|(_, p)| inst.made.get(&format!("{root}/{p}")).cloned())
            .collect();
        let methods = MethodKind::ALL
            .iter()
            .filter_map(|k| {
                inst.made
                    .get(&format!("{root}/{}", k.name()))
                    .map(|id| (id.clone(), *k))
            })
            .collect();
        out.push(MachineNodes {
            id: m.id.clone(),
            name: m.name.clone(),
            object,
            messages,
            fields,
            signals: signal_nodes,
            methods,
        });
    }
    (out, states)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DriverConfig;
    use opcua::nodes::NamespaceMap;

    #[test]
    fn every_machine_gets_every_field_method_and_signal_node() {
        let dir = super::super::nodesets_dir(None);
        if !dir.join("Opc.Ua.MachineTool.NodeSet2.xml").exists() {
            eprintln!(
                "skipped: the companion NodeSets are not in {} (run nodesets/fetch; ./scripts/test does)",
                dir.display()
            );
            return;
        }
        let imports = super::super::load_nodesets(&dir).unwrap();
        let mut namespaces = NamespaceMap::new();
        let mut core = AddressSpace::new();
        core.import_node_set(&opcua::core_namespace::CoreNamespace, &mut namespaces);
        let mut space = AddressSpace::new();
        for i in &imports {
            space.import_node_set(&**i, &mut namespaces);
        }
        let ns = Ns::find(&space).expect("namespaces");
        let machine = |id: &str, name: &str| MachineConfig {
            id: MachineId::new(id).unwrap(),
            name: name.into(),
            profile: "mtconnect-generic".into(),
            identification: Identification {
                manufacturer: Some("Haas".into()),
                ..Default::default()
            },
            calendar: None,
            parts_per_cycle: 1,
            driver: DriverConfig::Sim { seed: None },
        };
        let machines = vec![
            (machine("m1", "Mill 1"), vec!["spindle_speed".to_string()]),
            (machine("m2", "Lathe 2"), vec!["execution".to_string()]),
        ];
        let (built, states) = build(
            &mut space,
            &core,
            ns,
            &machines,
            &Taxonomy::default(),
            "urn:shopbridge",
        );
        assert_eq!(built.len(), 2);
        for m in &built {
            for (i, (_, path)) in FIELDS.iter().enumerate() {
                assert!(m.fields[i].is_some(), "{}: no node for {path}", m.id);
            }
            assert_eq!(m.methods.len(), 4, "{}", m.id);
            assert_eq!(m.signals.len(), 1, "{}", m.id);
            assert!(space.find(&m.messages).is_some());
        }
        assert_eq!(states.item.len(), 4);
        assert_eq!(states.operation_mode.len(), 4);
        assert_eq!(states.program.len(), 5);
        // The nameplate came from the configuration; optional entries only when known.
        let maker = NodeId::new(ns.sb, "m1/Identification/Manufacturer");
        assert!(space.find(&maker).is_some());
        assert!(
            space
                .find(&NodeId::new(ns.sb, "m1/Identification/SoftwareRevision"))
                .is_none()
        );
        // Each state machine's CurrentState carries the mandatory Id property.
        assert!(
            space
                .find(&NodeId::new(
                    ns.sb,
                    "m1/Monitoring/MachineTool/MachineryItemState/CurrentState/Id"
                ))
                .is_some()
        );
    }
}
