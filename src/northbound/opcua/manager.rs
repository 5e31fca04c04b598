//! The node manager for the companion namespaces and shopbridge's: loads the NodeSets, builds
//! the machines when the server starts, serves reads from the address space (the feed keeps
//! it current) and turns method calls into journal records.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use opcua::nodes::NodeSetImport;
use opcua::server::address_space::AddressSpace;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{
    CoreNodeManager, InMemoryNodeManagerImpl, InMemoryNodeManagerImplBuilder,
};
use opcua::server::node_manager::{MethodCall, RequestContext, ServerContext};
use opcua::sync::RwLock;
use opcua::types::{DiagnosticInfo, NodeId, StatusCode, UAString, Variant};

use super::auth::Users;
use super::space::{self, MachineNodes, MethodKind, Ns, States};
use crate::config::{MachineConfig, Role};
use crate::context::commands::{CommandError, Commands};
use crate::model::{Command, CommandOrigin, Taxonomy};
use crate::northbound::http::Telemetry;

/// What the manager built, for the feed.
pub struct Built {
    pub ns: Ns,
    /// The message event type's fields, own and inherited (see [`Instantiator::event_fields`]).
    pub event_fields: Vec<(NodeId, opcua::types::QualifiedName, opcua::types::NodeClass)>,
    pub machines: Vec<MachineNodes>,
    pub states: States,
}

pub struct Builder {
    pub imports: Vec<Box<dyn NodeSetImport>>,
    pub machines: Vec<(MachineConfig, Vec<String>)>,
    pub taxonomy: Taxonomy,
    pub product_uri: String,
    pub commands: Commands,
    pub users: Arc<Users>,
    pub built: Arc<OnceLock<Built>>,
    pub telemetry: Arc<Telemetry>,
}

pub struct Manager {
    namespaces: Vec<NamespaceMetadata>,
    machines: Vec<(MachineConfig, Vec<String>)>,
    taxonomy: Taxonomy,
    product_uri: String,
    commands: Commands,
    users: Arc<Users>,
    built: Arc<OnceLock<Built>>,
    telemetry: Arc<Telemetry>,
    /// Method node → (machine id, which method).
    methods: OnceLock<std::collections::HashMap<NodeId, (String, MethodKind)>>,
}

impl InMemoryNodeManagerImplBuilder for Builder {
    type Impl = Manager;

    fn build(self, context: ServerContext, address_space: &mut AddressSpace) -> Manager {
        let mut namespaces: Vec<NamespaceMetadata> = Vec::new();
        {
            let mut type_tree = context.type_tree.write();
            for import in &self.imports {
                address_space.import_node_set(&**import, type_tree.namespaces_mut());
                for uri in import.get_own_namespaces() {
                    if !namespaces.iter().any(|n| n.namespace_uri == uri) {
                        namespaces.push(NamespaceMetadata {
                            namespace_uri: uri,
                            ..Default::default()
                        });
                    }
                }
            }
            for ns in &mut namespaces {
                ns.namespace_index = type_tree.namespaces_mut().add_namespace(&ns.namespace_uri);
            }
        }
        for ns in &namespaces {
            address_space.add_namespace(&ns.namespace_uri, ns.namespace_index);
        }
        Manager {
            namespaces,
            machines: self.machines,
            taxonomy: self.taxonomy,
            product_uri: self.product_uri,
            commands: self.commands,
            users: self.users,
            built: self.built,
            telemetry: self.telemetry,
            methods: OnceLock::new(),
        }
    }
}

#[async_trait]
impl InMemoryNodeManagerImpl for Manager {
    async fn init(&self, address_space: &mut AddressSpace, context: ServerContext) {
        let Some(ns) = Ns::find(address_space) else {
            tracing::error!(
                "OPC UA: the MachineTool or shopbridge namespace is missing; no machines are served"
            );
            return;
        };
        let Some(core) = context.node_managers.get_of_type::<CoreNodeManager>() else {
            tracing::error!("OPC UA: the core node manager is missing; no machines are served");
            return;
        };
        let core_space = core.address_space().read();
        let event_fields = super::instantiate::Instantiator::new(address_space, &core_space, ns.sb)
            .event_fields(&ns.message_event_type());
        let (machines, states) = space::build(
            address_space,
            &core_space,
            ns,
            &self.machines,
            &self.taxonomy,
            &self.product_uri,
        );
        let methods = machines
            .iter()
            .flat_map(|m| {
                m.methods
                    .iter()
                    .map(|(id, k)| (id.clone(), (m.id.as_str().to_string(), *k)))
            })
            .collect();
        let _ = self.methods.set(methods);
        let _ = self.built.set(Built {
            ns,
            event_fields,
            machines,
            states,
        });
    }

    fn name(&self) -> &str {
        "shopbridge"
    }

    fn namespaces(&self) -> Vec<NamespaceMetadata> {
        self.namespaces.clone()
    }

    async fn call(
        &self,
        context: &RequestContext,
        _address_space: &RwLock<AddressSpace>,
        methods_to_call: &mut [&mut &mut MethodCall],
    ) -> Result<(), StatusCode> {
        let token = context.user_token();
        let role = self.users.role(token);
        let user = (!token.is_anonymous()).then(|| token.0.clone());
        for call in methods_to_call.iter_mut() {
            let Some((machine, kind)) = self
                .methods
                .get()
                .and_then(|m| m.get(call.method_id()))
                .cloned()
            else {
                call.set_status(StatusCode::BadMethodInvalid);
                continue;
            };
            if role < Role::Operator {
                Telemetry::add(&self.telemetry.opcua_method_calls_refused_total, 1);
                tracing::info!(user = ?user, method = kind.name(), machine = %machine, "OPC UA method refused: the operator role is needed");
                call.set_status(StatusCode::BadUserAccessDenied);
                continue;
            }
            let origin = CommandOrigin {
                channel: "opcua".into(),
                user: user.clone(),
            };
            let result = match self.command(kind, call.arguments()) {
                Ok(command) => self.commands.submit(&machine, origin, command).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(seq) => {
                    Telemetry::add(&self.telemetry.opcua_method_calls_total, 1);
                    tracing::info!(user = ?user, method = kind.name(), machine = %machine, seq, "OPC UA method call journaled");
                    call.set_outputs(vec![Variant::from(seq)]);
                    call.set_status(StatusCode::Good);
                }
                Err(e) => {
                    Telemetry::add(&self.telemetry.opcua_method_calls_refused_total, 1);
                    let (status, args) = match &e {
                        CommandError::BadArgument { argument, .. } => (
                            StatusCode::BadInvalidArgument,
                            argument_results(kind, argument),
                        ),
                        CommandError::UnknownMachine(_) => (StatusCode::BadNodeIdUnknown, vec![]),
                        CommandError::Journal(_) => (StatusCode::BadResourceUnavailable, vec![]),
                    };
                    tracing::info!(user = ?user, method = kind.name(), machine = %machine, error = %e, "OPC UA method call refused");
                    if args.is_empty() {
                        call.set_status(status);
                    } else {
                        call.set_argument_error(args);
                    }
                    call.set_diagnostic_info(DiagnosticInfo {
                        additional_info: Some(UAString::from(e.to_string())),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(())
    }
}

/// The input arguments of each method, in order.
fn argument_names(kind: MethodKind) -> &'static [&'static str] {
    match kind {
        MethodKind::SetStopReason => &["ReasonCode", "Note"],
        MethodKind::SignIn => &["OperatorId"],
        MethodKind::SignOut => &[],
        MethodKind::ConfirmOperation => &["JobId", "OperationId"],
    }
}

/// Per input argument: Good, or Bad_InvalidArgument for the one named.
fn argument_results(kind: MethodKind, bad: &str) -> Vec<StatusCode> {
    argument_names(kind)
        .iter()
        .map(|a| {
            if *a == bad {
                StatusCode::BadInvalidArgument
            } else {
                StatusCode::Good
            }
        })
        .collect()
}

impl Manager {
    /// Reads a call's arguments into a command.
    fn command(&self, kind: MethodKind, args: &[Variant]) -> Result<Command, CommandError> {
        let names = argument_names(kind);
        if args.len() != names.len() {
            return Err(CommandError::BadArgument {
                argument: names.first().copied().unwrap_or("arguments"),
                why: format!(
                    "{} takes {} argument(s) ({}), found {}",
                    kind.name(),
                    names.len(),
                    names.join(", "),
                    args.len()
                ),
            });
        }
        let text = |i: usize| -> Result<String, CommandError> {
            match &args[i] {
                Variant::String(s) => Ok(s.as_ref().to_string()),
                Variant::Empty => Ok(String::new()),
                other => Err(CommandError::BadArgument {
                    argument: names[i],
                    why: format!("expected a String, found {:?}", other.type_id()),
                }),
            }
        };
        Ok(match kind {
            MethodKind::SetStopReason => self.commands.stop_reason(&text(0)?, &text(1)?)?,
            MethodKind::SignIn => Command::SignIn {
                operator: text(0)?.trim().to_string(),
            },
            MethodKind::SignOut => Command::SignOut,
            MethodKind::ConfirmOperation => Command::ConfirmOperation {
                job: text(0)?.trim().to_string(),
                operation: text(1)?.trim().to_string(),
            },
        })
    }
}

/// The node manager as the server holds it.
pub type ShopManager = opcua::server::node_manager::memory::InMemoryNodeManager<Manager>;
