//! Instances from type definitions, the way OPC UA Part 3 §6.4 says: an instance of a type
//! gets every *mandatory* instance declaration of the type, of its supertypes and of the
//! interfaces they implement (the nearest declaration of a browse name wins), recursively; an
//! *optional* one only when the caller selects its path; placeholders never (the caller adds
//! `<Channel>`-style children itself by instantiating their type).
//!
//! Browse names, data types, value ranks, access levels, default values (engineering units,
//! method arguments) and type definitions are copied from the declarations, so a client that
//! resolves browse paths from the companion specification finds exactly what it expects.
//!
//! Declarations are read from two address spaces: the core namespace (ns=0, served by the
//! server's core node manager) and ours, which holds the imported companion NodeSets.

use std::collections::BTreeMap;

use opcua::nodes::{
    Base, DefaultTypeTree, HasNodeId, Method, NodeBase, NodeType, Object, Variable,
};
use opcua::server::address_space::AddressSpace;
use opcua::types::{
    BrowseDirection, DataEncoding, NodeClass, NodeId, NumericRange, QualifiedName, ReferenceTypeId,
    TimestampsToReturn,
};

/// `i=78` Mandatory, `i=80` Optional.
const MANDATORY: u32 = 78;
const OPTIONAL: u32 = 80;
/// HasComponent, HasProperty, HasOrderedComponent, HasAddIn: the references that hold
/// instance declarations.
const CHILD_REFS: [u32; 4] = [47, 46, 49, 17604];
const HAS_INTERFACE: u32 = 17603;
const HAS_SUBTYPE: u32 = 45;
const HAS_TYPE_DEFINITION: u32 = 40;
const HAS_MODELLING_RULE: u32 = 37;

/// One instance declaration: the declaring node and how its parent holds it.
#[derive(Clone, Debug)]
struct Decl {
    node: NodeId,
    reference: NodeId,
    name: QualifiedName,
}

/// Reads declarations from the core namespace and ours; writes instances into ours.
pub struct Instantiator<'a> {
    pub space: &'a mut AddressSpace,
    core: &'a AddressSpace,
    tree: DefaultTypeTree,
    /// The namespace instance node ids are made in.
    ns: u16,
    /// Every node made, by path (`Monitoring/MachineTool/OperationMode`) under its root id.
    pub made: BTreeMap<String, NodeId>,
}

fn ns0(i: u32) -> NodeId {
    NodeId::new(0, i)
}

impl<'a> Instantiator<'a> {
    pub fn new(space: &'a mut AddressSpace, core: &'a AddressSpace, ns: u16) -> Self {
        Self {
            space,
            core,
            tree: DefaultTypeTree::new(),
            ns,
            made: BTreeMap::new(),
        }
    }

    fn find(&self, id: &NodeId) -> Option<&NodeType> {
        self.space.find(id).or_else(|| self.core.find(id))
    }

    /// Targets of references of one type from `id`, in both address spaces.
    fn targets(&self, id: &NodeId, reference: u32, dir: BrowseDirection) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for space in [&*self.space, self.core] {
            for r in space.find_references(id, None::<(NodeId, bool)>, &self.tree, dir) {
                if r.reference_type == &ns0(reference) && !out.contains(r.target_node) {
                    out.push(r.target_node.clone());
                }
            }
        }
        out
    }

    /// Children of `id` held by an instance-declaration reference (and how).
    fn children(&self, id: &NodeId) -> Vec<Decl> {
        let mut out: Vec<Decl> = Vec::new();
        for space in [&*self.space, self.core] {
            for r in space.find_references(
                id,
                None::<(NodeId, bool)>,
                &self.tree,
                BrowseDirection::Forward,
            ) {
                if !CHILD_REFS.iter().any(|c| r.reference_type == &ns0(*c)) {
                    continue;
                }
                if out.iter().any(|d| &d.node == r.target_node) {
                    continue;
                }
                if let Some(n) = self.find(r.target_node) {
                    out.push(Decl {
                        node: r.target_node.clone(),
                        reference: r.reference_type.clone(),
                        name: n.as_node().browse_name().clone(),
                    });
                }
            }
        }
        out
    }

    /// The instance declarations of a type: its own, its interfaces', its supertypes' (the
    /// nearest declaration of a browse name wins).
    fn declarations(&self, type_id: &NodeId) -> Vec<Decl> {
        let mut out: Vec<Decl> = Vec::new();
        let mut t = Some(type_id.clone());
        let mut guard = 0;
        while let Some(ty) = t {
            guard += 1;
            if guard > 32 {
                break;
            }
            let mut sources = vec![ty.clone()];
            sources.extend(self.targets(&ty, HAS_INTERFACE, BrowseDirection::Forward));
            for s in sources {
                for d in self.children(&s) {
                    if !out.iter().any(|o| o.name == d.name) {
                        out.push(d);
                    }
                }
            }
            t = self
                .targets(&ty, HAS_SUBTYPE, BrowseDirection::Inverse)
                .into_iter()
                .next();
        }
        out
    }

    /// The fields an event type declares or inherits (one level deep), for the server's type
    /// tree: async-opcua resolves an event filter's `(type, browse path)` against the type's
    /// own properties only, so a client selecting `Severity` of a subtype would get nothing.
    pub fn event_fields(&self, type_id: &NodeId) -> Vec<(NodeId, QualifiedName, NodeClass)> {
        self.declarations(type_id)
            .into_iter()
            .filter_map(|d| {
                let class = self.find(&d.node)?.node_class();
                Some((d.node, d.name, class))
            })
            .collect()
    }

    fn type_definition(&self, id: &NodeId) -> Option<NodeId> {
        self.targets(id, HAS_TYPE_DEFINITION, BrowseDirection::Forward)
            .into_iter()
            .next()
    }

    fn rule(&self, id: &NodeId) -> Option<u32> {
        self.targets(id, HAS_MODELLING_RULE, BrowseDirection::Forward)
            .into_iter()
            .find_map(|r| match r.identifier {
                opcua::types::Identifier::Numeric(n) if r.namespace == 0 => Some(n),
                _ => None,
            })
    }

    /// A state (or any child) of a type or its supertypes, by browse name: the node id a
    /// state machine's `CurrentState/Id` points at.
    pub fn child_of_type(&self, type_id: &NodeId, name: &str) -> Option<NodeId> {
        let mut t = Some(type_id.clone());
        let mut guard = 0;
        while let Some(ty) = t {
            guard += 1;
            if guard > 32 {
                return None;
            }
            if let Some(d) = self
                .children(&ty)
                .into_iter()
                .find(|d| d.name.name.as_ref() == name)
            {
                return Some(d.node);
            }
            t = self
                .targets(&ty, HAS_SUBTYPE, BrowseDirection::Inverse)
                .into_iter()
                .next();
        }
        None
    }

    fn id(&self, path: &str) -> NodeId {
        NodeId::new(self.ns, path.to_string())
    }

    /// Makes an object of type `type_id` under `parent`, with every mandatory child and the
    /// optional ones `select` accepts (it gets the path relative to this object).
    pub fn object(
        &mut self,
        parent: &NodeId,
        reference: NodeId,
        name: QualifiedName,
        type_id: &NodeId,
        id_path: &str,
        select: &dyn Fn(&str) -> bool,
    ) -> NodeId {
        let id = self.id(id_path);
        let object = Object::new(&id, name.clone(), name.name.as_ref(), Default::default());
        self.insert(object.into(), parent, &reference, type_id);
        self.made.insert(id_path.to_string(), id.clone());
        for d in self.declarations(type_id) {
            self.child(&id, id_path, "", &d, select);
        }
        id
    }

    /// Adds the mandatory members of `type_id` (an interface the object implements) to an
    /// existing object.
    pub fn members(&mut self, object: &NodeId, id_path: &str, type_id: &NodeId) {
        for d in self.declarations(type_id) {
            self.child(object, id_path, "", &d, &|_| false);
        }
    }

    /// Makes a plain variable (no declaration) under `parent`.
    pub fn variable(
        &mut self,
        parent: &NodeId,
        name: QualifiedName,
        data_type: NodeId,
        id_path: &str,
    ) -> NodeId {
        let id = self.id(id_path);
        let mut base = Base::new(NodeClass::Variable, &id, name.clone(), name.name.as_ref());
        base.set_description(name.name.as_ref().into());
        let waiting = opcua::types::DataValue {
            value: Some(opcua::types::Variant::Empty),
            status: Some(opcua::types::StatusCode::BadWaitingForInitialData),
            ..Default::default()
        };
        let v = Variable::new_full(base, data_type, false, -1, waiting, 1, 1, None, None);
        self.insert(v.into(), parent, &ns0(47), &ns0(63));
        self.made.insert(id_path.to_string(), id.clone());
        id
    }

    fn insert(&mut self, node: NodeType, parent: &NodeId, reference: &NodeId, type_id: &NodeId) {
        let id = node.node_id().clone();
        let has_type = !matches!(node, NodeType::Method(_));
        self.space.insert::<_, NodeId>(node, None);
        self.space.insert_reference(parent, &id, reference.clone());
        if has_type {
            self.space
                .insert_reference(&id, type_id, ReferenceTypeId::HasTypeDefinition);
        }
    }

    /// Instantiates declaration `d` as a child of `parent` (whose id path is `root`); `rel` is
    /// the parent's path relative to the object `select` judges.
    fn child(
        &mut self,
        parent: &NodeId,
        root: &str,
        rel: &str,
        d: &Decl,
        select: &dyn Fn(&str) -> bool,
    ) {
        let rel = if rel.is_empty() {
            d.name.name.as_ref().to_string()
        } else {
            format!("{rel}/{}", d.name.name.as_ref())
        };
        match self.rule(&d.node) {
            Some(MANDATORY) => {}
            Some(OPTIONAL) if select(&rel) => {}
            _ => return,
        }
        let path = format!("{root}/{}", d.name.name.as_ref());
        let id = self.id(&path);
        let Some(decl) = self.find(&d.node) else {
            return;
        };
        let type_id = self.type_definition(&d.node);
        let n = decl.as_node();
        let mut base = Base::new(
            n.node_class(),
            &id,
            d.name.clone(),
            n.display_name().clone(),
        );
        if let Some(desc) = n.description() {
            base.set_description(desc.clone());
        }
        let node: NodeType = match decl {
            NodeType::Variable(v) => {
                let mut value = v.value(
                    TimestampsToReturn::Neither,
                    &NumericRange::None,
                    &DataEncoding::Binary,
                    0.0,
                );
                value.status = None;
                Variable::new_full(
                    base,
                    v.data_type(),
                    false,
                    v.value_rank(),
                    value,
                    // Instances are read-only: values come from the machines.
                    1,
                    1,
                    v.array_dimensions(),
                    None,
                )
                .into()
            }
            NodeType::Method(_) => Method::new_full(base, true, true).into(),
            NodeType::Object(o) => Object::new_full(base, o.event_notifier()).into(),
            _ => return,
        };
        let type_id = type_id.unwrap_or_else(|| ns0(58));
        self.insert(node, parent, &d.reference, &type_id);
        self.made.insert(path.clone(), id.clone());
        // The declaration's own children first, then its type's.
        let mut decls = self.children(&d.node);
        if decl_is_instance(self.find(&d.node)) {
            for td in self.declarations(&type_id) {
                if !decls.iter().any(|o| o.name == td.name) {
                    decls.push(td);
                }
            }
        }
        for c in decls {
            self.child(&id, &path, &rel, &c, select);
        }
    }
}

fn decl_is_instance(n: Option<&NodeType>) -> bool {
    matches!(n, Some(NodeType::Object(_)) | Some(NodeType::Variable(_)))
}
