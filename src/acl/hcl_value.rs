//! HCL rules (as `hcl-rs` parses them) into the JSON shape of a policy, so one decoder
//! (`rules::rules_from_value`) reads both syntaxes.
//!
//! `key_prefix "app/" { policy = "write" }` becomes `{"key_prefix": [{"app/": {"policy": "write"}}]}`:
//! repeated blocks of one kind become a list, as in HCL v1's JSON form. Only literal values are
//! accepted: interpolations, variables, functions and operators are refused.

use hcl::{Block, Body, Expression, ObjectKey, Structure};
use serde_json::{Map, Value};

use super::rules::RulesError;

fn syntax(message: impl Into<String>) -> RulesError {
    RulesError::Syntax(message.into())
}

/// The top level of a policy: every block needs exactly one name label.
pub(super) fn body_to_value(body: Body) -> Result<Value, RulesError> {
    for structure in &body.0 {
        if let Structure::Block(block) = structure
            && block.labels.len() != 1
        {
            let kind = block.identifier.as_str();
            return Err(syntax(format!("{kind:?} block needs exactly one name, as in {kind} \"name\" {{ policy = \"read\" }}")));
        }
    }
    body_value(body)
}

fn body_value(body: Body) -> Result<Value, RulesError> {
    let mut out = Map::new();
    for structure in body.0 {
        match structure {
            Structure::Attribute(attribute) => {
                let key = attribute.key.as_str().to_string();
                let value = expression_value(attribute.expr)?;
                // A repeated attribute never gets here: the parser refuses it, as Consul's
                // hcl.DecodeErrorOnDuplicates does.
                out.insert(key, value);
            }
            Structure::Block(block) => {
                let key = block.identifier.as_str().to_string();
                let value = block_value(block)?;
                match out.entry(key) {
                    serde_json::map::Entry::Vacant(slot) => {
                        slot.insert(Value::Array(vec![value]));
                    }
                    serde_json::map::Entry::Occupied(mut slot) => match slot.get_mut() {
                        Value::Array(items) => items.push(value),
                        _ => return Err(syntax(format!("{:?} is both an attribute and a block", slot.key()))),
                    },
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// A block's labels nest its body: `a "x" "y" { .. }` is `{"x": {"y": {..}}}`.
fn block_value(block: Block) -> Result<Value, RulesError> {
    let mut value = body_value(block.body)?;
    for label in block.labels.iter().rev() {
        let mut wrapper = Map::new();
        wrapper.insert(label.as_str().to_string(), value);
        value = Value::Object(wrapper);
    }
    Ok(value)
}

fn expression_value(expression: Expression) -> Result<Value, RulesError> {
    Ok(match expression {
        Expression::Null => Value::Null,
        Expression::Bool(b) => Value::Bool(b),
        Expression::Number(n) => serde_json::to_value(n).map_err(|e| syntax(e.to_string()))?,
        Expression::String(s) => Value::String(s),
        Expression::Array(items) => Value::Array(items.into_iter().map(expression_value).collect::<Result<_, _>>()?),
        Expression::Object(object) => {
            let mut out = Map::new();
            for (key, value) in object {
                let key = match key {
                    ObjectKey::Identifier(ident) => ident.as_str().to_string(),
                    ObjectKey::Expression(Expression::String(s)) => s,
                    _ => return Err(syntax("object keys must be names or strings")),
                };
                out.insert(key, expression_value(value)?);
            }
            Value::Object(out)
        }
        Expression::Parenthesis(inner) => expression_value(*inner)?,
        Expression::TemplateExpr(_) => return Err(syntax("interpolations and directives are not allowed in ACL rules")),
        _ => return Err(syntax("only literal values (strings, lists, maps) are allowed in ACL rules")),
    })
}
