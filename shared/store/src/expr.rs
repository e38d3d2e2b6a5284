//! UpdateItem expressions built with placeholders for every name and value, and
//! the readers of an item's attributes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use messenger_types::Timestamp;

/// An UpdateItem expression whose attribute names all go through placeholders
/// (`status`, `ttl`, `owner`, `source` and `action` are reserved words).
#[derive(Default)]
pub(crate) struct Expr {
    pub(crate) names: HashMap<String, String>,
    pub(crate) values: HashMap<String, AttributeValue>,
    pub(crate) sets: Vec<String>,
    pub(crate) removes: Vec<String>,
    pub(crate) adds: Vec<String>,
    pub(crate) condition: Option<String>,
}

impl Expr {
    pub(crate) fn name(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attr) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    pub(crate) fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    pub(crate) fn set(&mut self, attr: &str, v: AttributeValue) -> &mut Self {
        let (n, v) = (self.name(attr), self.value(v));
        self.sets.push(format!("{n} = {v}"));
        self
    }

    /// `a.b.c` with a placeholder for every part.
    pub(crate) fn path(&mut self, parts: &[&str]) -> String {
        parts
            .iter()
            .map(|p| self.name(p))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Sets the attribute at `path` (see [`Self::path`]).
    pub(crate) fn set_path(&mut self, path: &str, v: AttributeValue) -> &mut Self {
        let v = self.value(v);
        self.sets.push(format!("{path} = {v}"));
        self
    }

    pub(crate) fn remove_path(&mut self, path: String) -> &mut Self {
        self.removes.push(path);
        self
    }

    /// Moves the thread's version on: every write to a thread item does.
    pub(crate) fn bump_version(&mut self) -> &mut Self {
        let (n, v) = (self.name("ver"), self.value(n(1)));
        self.adds.push(format!("{n} {v}"));
        self
    }

    pub(crate) fn set_opt(&mut self, attr: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.set(attr, s(v)),
            None => {
                let n = self.name(attr);
                self.removes.push(n);
                self
            }
        }
    }

    pub(crate) fn set_if_absent(&mut self, attr: &str, v: AttributeValue) -> &mut Self {
        let (n, v) = (self.name(attr), self.value(v));
        self.sets.push(format!("{n} = if_not_exists({n}, {v})"));
        self
    }

    pub(crate) fn condition(&mut self, condition: String) -> &mut Self {
        self.condition = Some(condition);
        self
    }

    /// Sets `ts_attr` to `at` and makes the whole update conditional on `at` being
    /// newer than what `ts_attr` holds.
    pub(crate) fn only_if_newer(&mut self, ts_attr: &str, at: Timestamp) -> &mut Self {
        let n = self.name(ts_attr);
        let v = self.value(n_ms(at));
        self.sets.push(format!("{n} = {v}"));
        self.condition(format!("attribute_not_exists({n}) OR {n} < {v}"))
    }

    pub(crate) fn update_expression(&self) -> String {
        let mut clauses = Vec::new();
        for (verb, parts) in [
            ("SET", &self.sets),
            ("REMOVE", &self.removes),
            ("ADD", &self.adds),
        ] {
            if !parts.is_empty() {
                clauses.push(format!("{verb} {}", parts.join(", ")));
            }
        }
        clauses.join(" ")
    }
}

pub(crate) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn n_ms(t: Timestamp) -> AttributeValue {
    n(t.as_millis())
}

pub(crate) fn get_s(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<String> {
    item.get(attr).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn get_n(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<i64> {
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn get_ts(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<Timestamp> {
    get_n(item, attr).map(Timestamp::from_millis)
}

pub(crate) fn get_bool(item: &HashMap<String, AttributeValue>, attr: &str) -> Option<bool> {
    item.get(attr).and_then(|v| v.as_bool().ok()).copied()
}

pub(crate) fn ttl_after_days(now: Timestamp, days: i64) -> AttributeValue {
    n(now.as_millis() / 1000 + days * 86_400)
}
