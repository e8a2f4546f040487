//! The bottom layer of the embedded backend: how model values become column values and back.
//! Documents (entities, attributes, subscriptions, messages) are stored as JSON text; a list of
//! any length is bound as one JSON-array variable. No module here knows a table; every table
//! module builds on this one.

use ngsild_core::Entity;
use rusqlite::types::Value as SqlValue;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A conversion failure, as rusqlite reports one (it aborts the transaction like any SQL error).
pub fn sql_err(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// A value as the JSON text a column holds.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(sql_err)
}

/// A value from the JSON text of a column.
pub fn from_json<T: DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(sql_err)
}

/// An entity from its stored document.
pub fn decode(doc: &str) -> rusqlite::Result<Entity> {
    from_json(doc)
}

/// A list bound as ONE SQL variable, a JSON array, to be read with [`IN_LIST`]: any number of
/// ids, types, attribute names or values fits (SQLite allows 32766 variables per statement, and
/// one statement per list length would crowd the statement cache).
pub fn json_list<T: Serialize>(items: &[T]) -> SqlValue {
    SqlValue::Text(serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned()))
}

/// The right-hand side of `x IN …` over a [`json_list`] argument.
pub const IN_LIST: &str = "(SELECT value FROM json_each(?))";

/// `column` is one of `items`: `column = ?` for one (the plan of the common case stays a plain
/// index search), `column IN` a [`json_list`] for more.
pub fn one_of<T: Serialize + Clone + Into<SqlValue>>(column: &str, items: &[T], args: &mut Vec<SqlValue>) -> String {
    if let [one] = items {
        args.push(one.clone().into());
        format!("{column} = ?")
    } else {
        args.push(json_list(items));
        format!("{column} IN {IN_LIST}")
    }
}

/// Whether `table` has `column` (migrations ask).
pub fn has_column(conn: &rusqlite::Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let names = stmt.query_map([], |row| row.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names.iter().any(|n| n == column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_bind_as_one_variable() {
        let mut args = Vec::new();
        assert_eq!(one_of("id", &["a".to_owned()], &mut args), "id = ?");
        assert_eq!(one_of("id", &["a".to_owned(), "b".to_owned()], &mut args), format!("id IN {IN_LIST}"));
        assert_eq!(args, vec![SqlValue::Text("a".into()), SqlValue::Text("[\"a\",\"b\"]".into())]);
        assert!(from_json::<Entity>("{not json").is_err());
    }
}
