//! CEL expressions of an AuthenticationConfiguration: compiled once when the configuration is
//! loaded, evaluated per token over `claims` (mappings, claim rules) or `user` (user rules).

use std::sync::Arc;

use crate::Error;

/// Longest expression accepted, in bytes (a bound on configuration input).
const MAX_EXPRESSION_LEN: usize = 10 * 1024;

/// A compiled expression with its source (for messages).
#[derive(Clone)]
pub(crate) struct Expression {
    source: String,
    program: Arc<cel::Program>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl Expression {
    /// Compiles `source`, which may reference only the variable `variable` (`claims` or `user`),
    /// as kube-apiserver's CEL environments for these fields declare only that one.
    pub(crate) fn compile(source: &str, variable: &str, path: &str) -> Result<Expression, Error> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(Error::config(
                path,
                format!("expression is longer than {MAX_EXPRESSION_LEN} bytes"),
            ));
        }
        let program = cel::Program::compile(source)
            .map_err(|e| Error::config(path, format!("compilation failed: {e}")))?;
        let bound = macro_variables(source);
        if let Some(other) = program
            .references()
            .variables()
            .into_iter()
            .find(|v| *v != variable && !bound.contains(v))
        {
            return Err(Error::config(
                path,
                format!(
                    "compilation failed: undeclared reference to {other:?} (only {variable:?} is available here)"
                ),
            ));
        }
        Ok(Expression {
            source: source.to_owned(),
            program: Arc::new(program),
        })
    }

    /// The expression as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with `variable` bound to `value`.
    pub(crate) fn eval(&self, variable: &str, value: &cel::Value) -> Result<cel::Value, String> {
        let mut context = cel::Context::default();
        context.add_variable_from_value(variable, value.clone());
        self.program
            .execute(&context)
            .map_err(|e| format!("expression {:?} failed: {e}", self.source))
    }

    /// Evaluates to a boolean, or says why not.
    pub(crate) fn eval_bool(&self, variable: &str, value: &cel::Value) -> Result<bool, String> {
        match self.eval(variable, value)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(format!(
                "expression {:?} must return a bool, returned {}",
                self.source,
                type_name(&other)
            )),
        }
    }

    /// Evaluates to a string, or says why not.
    pub(crate) fn eval_string(&self, variable: &str, value: &cel::Value) -> Result<String, String> {
        match self.eval(variable, value)? {
            cel::Value::String(s) => Ok(s.as_str().to_owned()),
            other => Err(format!(
                "expression {:?} must return a string, returned {}",
                self.source,
                type_name(&other)
            )),
        }
    }

    /// Evaluates to a string or a list of strings (null: none), as Kubernetes accepts for
    /// groups and extra values.
    pub(crate) fn eval_strings(
        &self,
        variable: &str,
        value: &cel::Value,
    ) -> Result<Vec<String>, String> {
        match self.eval(variable, value)? {
            cel::Value::String(s) => Ok(vec![s.as_str().to_owned()]),
            cel::Value::Null => Ok(Vec::new()),
            cel::Value::List(list) => list
                .iter()
                .map(|v| match v {
                    cel::Value::String(s) => Ok(s.as_str().to_owned()),
                    other => Err(format!(
                        "expression {:?} must return a string or a list of strings, the list holds {}",
                        self.source,
                        type_name(other)
                    )),
                })
                .collect(),
            other => Err(format!(
                "expression {:?} must return a string or a list of strings, returned {}",
                self.source,
                type_name(&other)
            )),
        }
    }
}

/// The variables that comprehension macros bind (`x` in `list.map(x, …)`), which the program's
/// references list beside the free ones.
fn macro_variables(source: &str) -> Vec<&str> {
    let mut bound = Vec::new();
    for name in ["map", "all", "exists", "exists_one", "filter"] {
        let call = format!(".{name}(");
        for (at, _) in source.match_indices(&call) {
            let args = source.get(at + call.len()..).unwrap_or_default();
            if let Some((first, _)) = args.split_once(',') {
                let ident = first.trim();
                if !ident.is_empty() && ident.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    bound.push(ident);
                }
            }
        }
    }
    bound
}

/// A JSON value as a CEL value.
pub(crate) fn to_cel(value: &serde_json::Value) -> Result<cel::Value, String> {
    cel::to_value(value).map_err(|e| format!("claims cannot be given to CEL: {e}"))
}

fn type_name(value: &cel::Value) -> &'static str {
    match value {
        cel::Value::List(_) => "a list",
        cel::Value::Map(_) => "a map",
        cel::Value::Int(_) | cel::Value::UInt(_) => "an integer",
        cel::Value::Float(_) => "a double",
        cel::Value::String(_) => "a string",
        cel::Value::Bytes(_) => "bytes",
        cel::Value::Bool(_) => "a bool",
        cel::Value::Null => "null",
        _ => "a value of another type",
    }
}
