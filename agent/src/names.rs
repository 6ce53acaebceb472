//! Generated container names, in Docker's `adjective_surname` form (a
//! container attached without a name gets one, as `docker run` does).
//! Our own lists: adjectives, and surnames of scientists and engineers of
//! networking and computing.

const ADJECTIVES: &[&str] = &[
    "agile",
    "amazing",
    "bold",
    "brave",
    "bright",
    "busy",
    "calm",
    "clever",
    "cool",
    "crisp",
    "curious",
    "dazzling",
    "eager",
    "elated",
    "epic",
    "fervent",
    "festive",
    "focused",
    "gallant",
    "gentle",
    "happy",
    "hardcore",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "magical",
    "modest",
    "nifty",
    "nimble",
    "noble",
    "optimistic",
    "patient",
    "peaceful",
    "practical",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "silly",
    "steady",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "wizardly",
    "youthful",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "baran",
    "bellovin",
    "berners_lee",
    "borg",
    "cerf",
    "clark",
    "conway",
    "crocker",
    "davies",
    "deering",
    "dijkstra",
    "estrin",
    "floyd",
    "hamilton",
    "hopper",
    "jacobson",
    "kahn",
    "kleinrock",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "metcalfe",
    "mockapetris",
    "perlman",
    "postel",
    "ritchie",
    "roberts",
    "saltzer",
    "shannon",
    "stallings",
    "thompson",
    "tomlinson",
    "torvalds",
    "turing",
    "varghese",
    "wirth",
    "zhang",
];

/// A random `adjective_surname`; `attempt > 0` appends a digit, as Docker
/// does when the first names it drew were taken.
pub fn generate(attempt: usize) -> String {
    let bytes = crate::model::random_id();
    let pick = |from: usize, len: usize| {
        usize::from_str_radix(&bytes[from..from + 4], 16).expect("hex digits") % len
    };
    let name = format!(
        "{}_{}",
        ADJECTIVES[pick(0, ADJECTIVES.len())],
        SURNAMES[pick(4, SURNAMES.len())]
    );
    if attempt == 0 {
        name
    } else {
        format!("{name}{}", pick(8, 10))
    }
}

/// A generated name `taken` says is free (Docker tries ten times, then
/// keeps going with digits; so do we).
pub fn generate_unique(taken: impl Fn(&str) -> bool) -> String {
    (0..)
        .map(generate)
        .find(|n| !taken(n))
        .expect("an endless supply of names")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid_container_names_and_avoid_taken_ones() {
        for attempt in 0..50 {
            let name = generate(attempt % 3);
            assert!(crate::model::valid_container_name(&name), "{name}");
            assert!(name.contains('_'), "{name}");
        }
        let first = generate(0);
        let other = generate_unique(|n| n == first);
        assert_ne!(other, first);
    }
}
