//! How deep a statement may nest. DataFusion clones and drops expression
//! trees recursively (`Expr::clone` is derived), so a statement nested
//! deeper than a thread's stack aborts the whole process, a stack overflow
//! being no panic anyone can catch. A left-deep chain of binary operators
//! (`a = 1 OR a = 2 OR …`, thousands long) is the easy way to get there.
//!
//! [`check`] bounds that depth before anything parses the statement,
//! without recursion: within each bracket, operators between two commas
//! chain (`a + b + c` is three levels); a comma starts a sibling (list
//! items, arguments, `VALUES` rows add no depth); a bracket opens a level
//! (the parser itself refuses brackets nested past 50). The estimate is at
//! least the tree's depth. Planning time grows with the square of a chain
//! (1.6 s for 1,000 `+`, 25 s for 4,000, on the development machine), so
//! the bound also keeps one statement from holding a query slot long.
//! The threads that plan SQL have stacks of [`STACK_BYTES`].

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The deepest a statement may nest (a chain of this many operators).
pub const MAX_DEPTH: usize = 1000;

/// The stack of each thread that plans or runs SQL: ample room for
/// [`MAX_DEPTH`] levels of planning (reserved address space; pages are
/// used as the stack grows).
pub const STACK_BYTES: usize = 64 << 20;

/// Refuses a statement nested deeper than [`MAX_DEPTH`], saying so; a
/// statement the tokenizer refuses passes (the parser then says what is
/// wrong with it).
pub fn check(sql: &str) -> Result<(), String> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let depth = depth(&tokens);
    if depth > MAX_DEPTH {
        return Err(format!(
            "the statement nests {depth} levels deep (a chain of that many operators), more than the {MAX_DEPTH} one statement may (planning it would take long, or overflow); to match many values, use `column IN (v1, v2, …)` instead of a chain of `OR`s"
        ));
    }
    Ok(())
}

/// At least how deep the expression trees of `tokens` nest: a run of
/// operators between commas chains (left-deep), above the deepest bracket
/// in it; a bracket is one level above its deepest run.
fn depth(tokens: &[Token]) -> usize {
    /// An open bracket (or the statement).
    #[derive(Default)]
    struct Level {
        /// Operators in the current run (since the last comma).
        operators: usize,
        /// The deepest bracket closed in the current run.
        inner: usize,
        /// The deepest run ended in this bracket.
        deepest: usize,
    }
    impl Level {
        fn end_run(&mut self) {
            self.deepest = self.deepest.max(self.operators + self.inner);
            self.operators = 0;
            self.inner = 0;
        }
    }
    /// Ends the innermost bracket: one level above its deepest run.
    fn close(levels: &mut Vec<Level>) {
        let mut closed = levels.pop().expect("more than one");
        closed.end_run();
        let outer = levels.last_mut().expect("never empty");
        outer.inner = outer.inner.max(closed.deepest + 1);
    }
    let tokens: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    // Set operations, joins and common table expressions (`name AS (`)
    // nest plans whatever the commas between them: each counts, once,
    // over the whole statement. (Clause keywords do not end a run: each
    // may also be a column's name.)
    let plans = tokens
        .iter()
        .enumerate()
        .filter(|(i, t)| match t {
            Token::Word(w) if w.quote_style.is_none() => match w.keyword {
                Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::JOIN => true,
                Keyword::AS => matches!(tokens.get(i + 1), Some(Token::LParen)),
                _ => false,
            },
            _ => false,
        })
        .count();
    let mut levels = vec![Level::default()];
    for (i, token) in tokens.iter().enumerate() {
        match token {
            // Every kind of bracket: a comma inside one ends a run there,
            // never the run around it (`MAP {1: 1, 2: 2}` in a chain).
            Token::LParen | Token::LBracket | Token::LBrace => levels.push(Level::default()),
            Token::RParen | Token::RBracket | Token::RBrace if levels.len() > 1 => {
                close(&mut levels)
            }
            Token::Comma => levels.last_mut().expect("never empty").end_run(),
            // A sign on a number is part of the literal.
            Token::Minus | Token::Plus if signs_a_number(&tokens, i) => {}
            t if chains_up(t) => levels.last_mut().expect("never empty").operators += 1,
            _ => {}
        }
    }
    // Brackets left open (the parser will refuse them) fold inwards-out.
    while levels.len() > 1 {
        close(&mut levels);
    }
    let mut statement = levels.pop().expect("the statement");
    statement.end_run();
    statement.deepest + plans
}

/// Whether the `-` or `+` at `i` is the sign of the number after it: it
/// starts an expression (after a bracket, a comma, an operator or a
/// keyword that an expression follows). Any other is counted as an
/// operator, which may overcount, never under.
fn signs_a_number(tokens: &[&Token], i: usize) -> bool {
    if !matches!(tokens.get(i + 1), Some(Token::Number(..))) {
        return false;
    }
    match i.checked_sub(1).map(|j| tokens[j]) {
        None | Some(Token::Comma | Token::LParen | Token::LBracket | Token::LBrace) => true,
        Some(Token::Word(w)) => {
            w.quote_style.is_none()
                && matches!(
                    w.keyword,
                    Keyword::SELECT
                        | Keyword::WHERE
                        | Keyword::HAVING
                        | Keyword::ON
                        | Keyword::WHEN
                        | Keyword::THEN
                        | Keyword::ELSE
                        | Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::IN
                        | Keyword::BETWEEN
                        | Keyword::LIMIT
                        | Keyword::OFFSET
                        | Keyword::BY
                        | Keyword::VALUES
                )
        }
        Some(t) => chains_up(t),
    }
}

/// Whether a token joins what is around it into one more level.
fn chains_up(token: &Token) -> bool {
    match token {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::DIV
                | Keyword::REGEXP
                | Keyword::RLIKE
                | Keyword::OVERLAPS
                | Keyword::MEMBER
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
        | Token::Placeholder(_)
        | Token::LParen
        | Token::RParen
        | Token::LBracket
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_of(sql: &str) -> usize {
        depth(&Tokenizer::new(&GenericDialect {}, sql).tokenize().unwrap())
    }

    #[test]
    fn chains_count_and_lists_do_not() {
        let ors: Vec<String> = (0..600).map(|i| format!("a = {i}")).collect();
        let error = check(&format!("SELECT 1 WHERE {}", ors.join(" OR "))).unwrap_err();
        assert!(error.contains("1199 levels"), "{error}");
        assert!(error.contains("IN ("), "{error}");
        let ors: Vec<String> = (0..400).map(|i| format!("a = {i}")).collect();
        check(&format!("SELECT 1 WHERE {}", ors.join(" OR "))).unwrap();
        // Wide, not deep (review 18): an IN list of negative numbers,
        // VALUES rows, a select list of calls.
        let items: Vec<String> = (0..50_000).map(|i| format!("-{i}")).collect();
        check(&format!("SELECT 1 WHERE a IN ({})", items.join(", "))).unwrap();
        let rows: Vec<String> = (0..5000).map(|i| format!("({i}, 'v{i}', -1)")).collect();
        check(&format!("SELECT * FROM (VALUES {}) AS v", rows.join(", "))).unwrap();
        let calls: Vec<String> = (0..5000)
            .map(|i| format!("coalesce(id, {i}) + 1"))
            .collect();
        check(&format!("SELECT {} FROM t", calls.join(", "))).unwrap();
        check("SELEC 'unterminated").unwrap();
        // Signs and brackets: `a - -1` is two levels; a chain inside a
        // bracket adds to the one outside.
        assert_eq!(depth_of("SELECT a - -1"), 1);
        assert_eq!(depth_of("SELECT a + (b + (c + d))"), 5);
        assert_eq!(depth_of("SELECT f(a + b, c) + d"), 3);
        let chain = "x ".to_string() + &"|| x ".repeat(MAX_DEPTH + 1);
        assert!(check(&format!("SELECT {chain}")).is_err());
        let minus = "1 ".to_string() + &"- 1 ".repeat(MAX_DEPTH + 1);
        assert!(check(&format!("SELECT {minus}")).is_err());
        // Names that are keywords too (`id`, `name`, `NULL`) are values:
        // the `-` after them is an operator (review 19).
        let chain = "id ".to_string() + &"- id ".repeat(MAX_DEPTH + 1);
        assert!(check(&format!("SELECT {chain} FROM t")).is_err());
        let chain = "NULL ".to_string() + &"- NULL ".repeat(MAX_DEPTH + 1);
        assert!(check(&format!("SELECT {chain}")).is_err());
        assert_eq!(depth_of("SELECT id - -1, - 2 FROM t WHERE x = -3"), 1);
        // Set operations count whatever the commas around them.
        let union = vec!["SELECT 1 AS a, 2 AS b"; MAX_DEPTH + 2].join(" UNION ALL ");
        assert!(check(&union).is_err());
        let joins = "JOIN t ON true ".repeat(MAX_DEPTH + 1);
        assert!(check(&format!("SELECT 1 FROM t {joins}")).is_err());
        let ctes: Vec<String> = (0..=MAX_DEPTH)
            .map(|i| format!("c{} AS (SELECT * FROM c{i})", i + 1))
            .collect();
        let ctes = format!("WITH c0 AS (SELECT 1), {} SELECT 1", ctes.join(", "));
        assert!(check(&ctes).is_err());
        // A comma inside braces ends no run outside them (review 20).
        let chain = vec!["1 + MAP {1: 1, 2: 2}[1]"; MAX_DEPTH].join(" + ");
        assert!(check(&format!("SELECT {chain}")).is_err());
        let chain = vec!["{'a': 1, 'b': 2}['a']"; MAX_DEPTH + 1].join(" + ");
        assert!(check(&format!("SELECT {chain}")).is_err());
    }
}
