//! How deep a statement may nest. DataFusion clones and drops expression
//! trees recursively (`Expr::clone` is derived), so a statement nested
//! deeper than a thread's stack aborts the whole process, a stack overflow
//! being no panic anyone can catch. A left-deep chain of binary operators
//! (`a = 1 OR a = 2 OR …`, thousands long) is the easy way to get there.
//!
//! [`check`] bounds the nesting before anything parses the statement: the
//! tree's depth is at most its operators (and brackets) plus the parser's
//! own bound on nested sub-expressions, so counting those tokens, without
//! recursion, bounds what planning will recurse through. The threads that
//! plan SQL have stacks of [`STACK_BYTES`], room for that depth.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The most operators and brackets one statement may have.
pub const MAX_OPERATORS: usize = 4096;

/// The stack of each thread that plans or runs SQL: room for
/// [`MAX_OPERATORS`] levels of planning (reserved address space; pages are
/// used as the stack grows).
pub const STACK_BYTES: usize = 64 << 20;

/// Refuses a statement with more than [`MAX_OPERATORS`] operators and
/// brackets, saying so; a statement the tokenizer refuses passes (the
/// parser then says what is wrong with it).
pub fn check(sql: &str) -> Result<(), String> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let operators = tokens.iter().filter(|t| nests(t)).count();
    if operators > MAX_OPERATORS {
        return Err(format!(
            "the statement has {operators} operators and brackets, more than the {MAX_OPERATORS} one statement may have (it would nest too deep to plan); to match many values, use `column IN (v1, v2, …)` instead of a chain of `OR`s"
        ));
    }
    Ok(())
}

/// Whether a token can add a level to the expression tree.
fn nests(token: &Token) -> bool {
    match token {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::COLLATE
                | Keyword::AT
        ),
        Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Whitespace(_)
        | Token::Comma
        | Token::Period
        | Token::SemiColon
        | Token::EOF
        | Token::Placeholder(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_chains_are_refused_and_long_in_lists_are_not() {
        let ors: Vec<String> = (0..5000).map(|i| format!("a = {i}")).collect();
        let error = check(&format!("SELECT 1 WHERE {}", ors.join(" OR "))).unwrap_err();
        assert!(error.contains("9999 operators"), "{error}");
        assert!(error.contains("IN ("), "{error}");
        let items: Vec<String> = (0..50_000).map(|i| format!("'v{i}'")).collect();
        check(&format!("SELECT 1 WHERE a IN ({})", items.join(", "))).unwrap();
        let ors: Vec<String> = (0..1000).map(|i| format!("a = {i}")).collect();
        check(&format!("SELECT 1 WHERE {}", ors.join(" OR "))).unwrap();
        check("SELEC 'unterminated").unwrap();
        let minus = "- ".repeat(MAX_OPERATORS + 1);
        assert!(check(&format!("SELECT {minus}1")).is_err());
    }
}
