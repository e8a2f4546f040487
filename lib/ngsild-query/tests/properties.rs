//! Property tests of the parsers, run by `cargo test` on stable (the libFuzzer targets in
//! `fuzz/` need nightly): for arbitrary input no parser panics and every error points at a
//! character boundary; nesting is accepted exactly up to `MAX_NESTING`; a printed expression
//! parses back to itself. Case counts are bounded (see `config`).

use ngsild_jsonld::core_context;
use ngsild_query::projection::{parse_projection, ProjectionItem};
use ngsild_query::{GeoQuery, ParseError, QExpr, ScopeExpr, TypeExpr, MAX_NESTING};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() }
}

/// Strings made of the pieces that matter to the grammars, multi-byte white space and Hangul
/// included, plus arbitrary characters.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            "(", ")", "{", "}", "[", "]", ";", "|", ",", "==", "!=", "~=", "!~=", "..", ">", ">=", "<", "<=", "!",
            "\"", "'", "\\", ".", "/", "#", "+", " ", "\u{a0}", "\u{3000}", "\u{2028}", "서울", "높이", "a", "height",
            "1", "-2.5e3", "true", "2024-01-01T00:00:00Z", "near", "maxDistance", "within", ";",
        ])
        .prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn at_boundary(input: &str, result: Result<(), ParseError>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert!(e.position <= input.len(), "{input:?}: {e}");
        prop_assert!(input.is_char_boundary(e.position), "{input:?}: {e}");
        prop_assert!(!e.message.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_parser_panics_and_positions_are_char_boundaries(input in hostile()) {
        let ctx = core_context();
        at_boundary(&input, QExpr::parse(&input, &ctx).map(|_| ()))?;
        at_boundary(&input, ScopeExpr::parse(&input).map(|_| ()))?;
        at_boundary(&input, TypeExpr::parse(&input, &ctx).map(|_| ()))?;
        at_boundary(&input, parse_projection(&input).map(|_| ()))?;
        at_boundary(&input, GeoQuery::parse(&input, "Point", "[0,0]", "location").map(|_| ()))?;
    }

    #[test]
    fn arbitrary_unicode_never_panics(input in ".{0,64}") {
        let ctx = core_context();
        at_boundary(&input, QExpr::parse(&input, &ctx).map(|_| ()))?;
        at_boundary(&input, ScopeExpr::parse(&input).map(|_| ()))?;
        at_boundary(&input, TypeExpr::parse(&input, &ctx).map(|_| ()))?;
        at_boundary(&input, parse_projection(&input).map(|_| ()))?;
    }

    /// Nesting is accepted up to the limit and refused past it, at the first delimiter too deep.
    #[test]
    fn nesting_is_accepted_exactly_up_to_the_limit(depth in 0usize..400, pad in prop::sample::select(vec!["", " ", "\u{3000}"])) {
        let ctx = core_context();
        let wrap = |open: &str, inner: &str, close: &str| format!("{}{inner}{}", open.repeat(depth), close.repeat(depth));
        let q = wrap(&format!("({pad}"), "a==1", ")");
        let types = wrap(&format!("({pad}"), "A", ")");
        let scope = wrap("(", "/a", ")");
        let pick = wrap("a{", "x", "}");
        // Where the first delimiter past the limit stands in each.
        let results = [
            (QExpr::parse(&q, &ctx).map(|_| ()), MAX_NESTING * (1 + pad.len())),
            (TypeExpr::parse(&types, &ctx).map(|_| ()), MAX_NESTING * (1 + pad.len())),
            (ScopeExpr::parse(&scope).map(|_| ()), MAX_NESTING),
            (parse_projection(&pick).map(|_| ()), MAX_NESTING * 2 + 1),
        ];
        for (result, expected) in results {
            if depth <= MAX_NESTING {
                prop_assert!(result.is_ok(), "depth {depth}: {result:?}");
            } else {
                let e = result.unwrap_err();
                prop_assert_eq!(e.position, expected);
                let limit = format!("{} levels", MAX_NESTING);
                prop_assert!(e.message.contains(&limit));
            }
        }
    }

    #[test]
    fn scope_expressions_print_and_parse_back(expr in scope_expr()) {
        let printed = print_scope(&expr);
        prop_assert_eq!(ScopeExpr::parse(&printed).map_err(|e| e.to_string()), Ok(expr), "{}", printed);
    }

    #[test]
    fn projections_print_and_parse_back(items in projection_list()) {
        let printed = print_projection(&items);
        prop_assert_eq!(parse_projection(&printed).map_err(|e| e.to_string()), Ok(items), "{}", printed);
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["Seoul", "Jongno", "서울", "종로", "a", "B_2", "+"]).prop_map(str::to_owned)
}

fn scope_leaf() -> impl Strategy<Value = ScopeExpr> {
    (prop::collection::vec(segment(), 1..4), any::<bool>()).prop_map(|(mut segments, hash)| {
        if hash {
            segments.push("#".to_owned());
        }
        ScopeExpr::Scope(segments)
    })
}

fn scope_expr() -> impl Strategy<Value = ScopeExpr> {
    scope_leaf().prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(ScopeExpr::And),
            prop::collection::vec(inner, 2..4).prop_map(ScopeExpr::Or),
        ]
    })
}

/// Compound members in parentheses, so the printed text has exactly the tree's shape.
fn print_scope(expr: &ScopeExpr) -> String {
    let member = |e: &ScopeExpr| match e {
        ScopeExpr::Scope(_) => print_scope(e),
        _ => format!("({})", print_scope(e)),
    };
    match expr {
        ScopeExpr::Scope(segments) => format!("/{}", segments.join("/")),
        ScopeExpr::And(all) => all.iter().map(member).collect::<Vec<_>>().join(";"),
        ScopeExpr::Or(any) => any.iter().map(member).collect::<Vec<_>>().join("|"),
    }
}

fn projection_list() -> impl Strategy<Value = Vec<ProjectionItem>> {
    let name = prop::sample::select(vec!["id", "name", "locatedAt", "이름", "a.b", "x:y"]).prop_map(str::to_owned);
    let leaf = name.clone().prop_map(|name| ProjectionItem { name, nested: None });
    let item = leaf.prop_recursive(8, 64, 3, move |inner| {
        (name.clone(), prop::option::of(prop::collection::vec(inner, 1..4)))
            .prop_map(|(name, nested)| ProjectionItem { name, nested })
    });
    prop::collection::vec(item, 1..4)
}

fn print_projection(items: &[ProjectionItem]) -> String {
    items
        .iter()
        .map(|i| match &i.nested {
            Some(nested) => format!("{}{{{}}}", i.name, print_projection(nested)),
            None => i.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}
