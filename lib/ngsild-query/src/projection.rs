//! Projection attribute lists of `pick` and `omit` (clause 4.21): `id,name,locatedAt{id,name}`,
//! where braces select inside the Entity a Relationship links to (Linked Entity retrieval,
//! clause 4.5.23), at most [`crate::MAX_NESTING`] deep. The scan is byte-wise but stops only at
//! ASCII delimiters, so every position it reports is a character boundary.

use crate::ParseError;

/// One member of a projection list; `nested` is the projection of the linked Entity, if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionItem {
    pub name: String,
    pub nested: Option<Vec<ProjectionItem>>,
}

/// Parses a projection list. Names are returned as written (the caller expands them).
pub fn parse_projection(input: &str) -> Result<Vec<ProjectionItem>, ParseError> {
    let mut parser = Parser { input, pos: 0, depth: 0 };
    let items = parser.list()?;
    if parser.pos < input.len() {
        return Err(parser.error("',' or the end of the list"));
    }
    Ok(items)
}

/// How deep a projection reaches into linked Entities (0 = not at all).
pub fn projection_depth(items: &[ProjectionItem]) -> usize {
    items.iter().filter_map(|i| i.nested.as_deref()).map(|n| 1 + projection_depth(n)).max().unwrap_or(0)
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    /// Open braces around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn list(&mut self) -> Result<Vec<ProjectionItem>, ParseError> {
        let mut items = vec![self.item()?];
        while self.peek() == Some(b',') {
            self.pos += 1;
            items.push(self.item()?);
        }
        Ok(items)
    }

    fn item(&mut self) -> Result<ProjectionItem, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| !matches!(b, b',' | b'{' | b'}')) {
            self.pos += 1;
        }
        let name = self.input[start..self.pos].trim();
        if name.is_empty() {
            self.pos = start;
            return Err(self.error("an attribute name"));
        }
        let nested = if self.peek() == Some(b'{') {
            if self.depth >= crate::MAX_NESTING {
                return Err(ParseError::too_deep(self.pos));
            }
            self.depth += 1;
            self.pos += 1;
            let nested = self.list()?;
            if self.peek() != Some(b'}') {
                return Err(self.error("',' or '}'"));
            }
            self.depth -= 1;
            self.pos += 1;
            Some(nested)
        } else {
            None
        };
        Ok(ProjectionItem { name: name.to_owned(), nested })
    }

    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn error(&self, expected: &str) -> ParseError {
        ParseError { position: self.pos, message: format!("expected {expected}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(name: &str) -> ProjectionItem {
        ProjectionItem { name: name.into(), nested: None }
    }

    #[test]
    fn plain_and_nested_lists() {
        assert_eq!(parse_projection("id,name").unwrap(), vec![flat("id"), flat("name")]);
        let parsed = parse_projection("id,locatedAt{id,name,isInCountry{description}},type").unwrap();
        assert_eq!(
            parsed,
            vec![
                flat("id"),
                ProjectionItem {
                    name: "locatedAt".into(),
                    nested: Some(vec![
                        flat("id"),
                        flat("name"),
                        ProjectionItem { name: "isInCountry".into(), nested: Some(vec![flat("description")]) },
                    ]),
                },
                flat("type"),
            ]
        );
        assert_eq!(projection_depth(&parsed), 2);
        assert_eq!(projection_depth(&parse_projection("a,b").unwrap()), 0);
    }

    #[test]
    fn errors_name_the_position() {
        let err = parse_projection("id,,name").unwrap_err();
        assert_eq!(err.position, 3);
        let err = parse_projection("a{b,c").unwrap_err();
        assert_eq!((err.position, err.message.as_str()), (5, "expected ',' or '}'"));
        assert_eq!(parse_projection("a}b").unwrap_err().position, 1);
        assert_eq!(parse_projection("a{}").unwrap_err().position, 2);
        assert_eq!(parse_projection("").unwrap_err().position, 0);
    }

    #[test]
    fn nesting_is_bounded() {
        let n = crate::MAX_NESTING;
        let ok = format!("{}x{}", "a{".repeat(n), "}".repeat(n));
        assert_eq!(projection_depth(&parse_projection(&ok).unwrap()), n);
        let err = parse_projection(&format!("{}x{}", "a{".repeat(5000), "}".repeat(5000))).unwrap_err();
        assert_eq!(err.position, 2 * n + 1, "the first brace past the limit");
        assert!(err.message.contains("64 levels"));
        assert_eq!(parse_projection("이름{\u{3000}},x").unwrap_err().position, "이름{".len());
    }
}
