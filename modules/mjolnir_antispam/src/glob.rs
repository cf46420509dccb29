//! Policy-rule globs as Synapse's `glob_to_regex` reads them: `*` is any run
//! of characters, `?` exactly one, everything else literal; anchored at both
//! ends and case-insensitive. Like the regex `.` they stand for, the
//! wildcards do not match a line break.

pub struct Glob {
    /// The pattern, lowercased.
    pattern: Vec<char>,
}

fn fold(text: &str) -> Vec<char> {
    text.chars().flat_map(char::to_lowercase).collect()
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: fold(pattern),
        }
    }

    /// Whether the whole of `text` matches. Greedy with one backtrack point
    /// (the last `*`): linear for patterns with one star, never exponential.
    pub fn matches(&self, text: &str) -> bool {
        let text = fold(text);
        let pattern = &self.pattern;
        let (mut p, mut t) = (0, 0);
        // After the last `*` seen: the pattern position after it, and the
        // text position it has swallowed up to.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p + 1, t));
                    p += 1;
                }
                Some('?') if text[t] != '\n' => {
                    p += 1;
                    t += 1;
                }
                Some(c) if *c != '?' && *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((after_star, swallowed)) if text[swallowed] != '\n' => {
                        star = Some((after_star, swallowed + 1));
                        p = after_star;
                        t = swallowed + 1;
                    }
                    _ => return false,
                },
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn wildcards_literals_and_case() {
        let cases = [
            ("@spam*:example.org", "@spammer:example.org", true),
            ("@spam*:example.org", "@SPAMMER:Example.ORG", true),
            ("@spam*:example.org", "@spammer:example.org.evil", false),
            ("@spam*:example.org", "@ham:example.org", false),
            ("*.evil.com", "a.b.evil.com", true),
            ("*.evil.com", "evil.com", false),
            ("?vil.com", "evil.com", true),
            ("?vil.com", "vil.com", false),
            ("a.b", "axb", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxxc", false),
            ("[x]", "[x]", true),
            ("bad*", "bad\nname", false),
            ("bad?name", "bad\nname", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern:?} against {text:?}"
            );
        }
    }
}
