//! Text that ends up in one DynamoDB item (400 KB), a Step Functions payload (256 KB) or a
//! task failure's cause (32,768 characters) must stay far below those limits whatever the
//! manifest holds: a reason naming every problem of a 10,000-file upload would not.

/// The most bytes of one reason Meridian stores or passes on.
pub const MAX_REASON_BYTES: usize = 4096;

/// `problems` joined by `"; "`, as many as fit in `max_bytes` (at least 40), then how many
/// more there are.
pub fn list(problems: &[String], max_bytes: usize) -> String {
    let more = |n: usize| {
        if n == 0 {
            String::new()
        } else {
            format!("; and {n} more")
        }
    };
    let mut out = String::new();
    for (shown, problem) in problems.iter().enumerate() {
        let separator = if shown == 0 { "" } else { "; " };
        let after = problems.len() - shown - 1;
        if out.len() + separator.len() + problem.len() + more(after).len() <= max_bytes {
            out.push_str(separator);
            out.push_str(problem);
        } else if shown == 0 {
            return text(problem, max_bytes.saturating_sub(more(after).len())) + &more(after);
        } else {
            return out + &more(after + 1);
        }
    }
    out
}

/// `value` cut to at most `max_bytes` (on a character boundary), marked when cut.
pub fn text(value: &str, max_bytes: usize) -> String {
    if value.len() <= max_bytes {
        return value.to_owned();
    }
    const MARK: &str = "…";
    let mut end = max_bytes.saturating_sub(MARK.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_lists_are_kept_whole_and_long_ones_say_how_many_are_left_out() {
        let few = vec!["a: missing".to_owned(), "b: size 1".to_owned()];
        assert_eq!(list(&few, 100), "a: missing; b: size 1");
        let many: Vec<String> = (0..10_000).map(|i| format!("file-{i}: missing")).collect();
        let summary = list(&many, 200);
        assert!(summary.len() <= 200, "{}", summary.len());
        assert!(summary.starts_with("file-0: missing; file-1: missing"));
        assert!(summary.ends_with("more"), "{summary}");
    }

    proptest! {
        #[test]
        fn lists_and_texts_stay_within_their_bound(
            problems in proptest::collection::vec(".{0,300}", 0..50),
            max in 40usize..2000,
        ) {
            prop_assert!(list(&problems, max).len() <= max);
            let joined = problems.concat();
            let cut = text(&joined, max);
            prop_assert!(cut.len() <= max);
            prop_assert!(joined.starts_with(cut.trim_end_matches('…')));
        }
    }
}
