//! The README, followed literally, works.

/// Issue 21, item 3: the quickstart followed literally works: the API example creates a
/// tenant the tour did not, and the first start's 0700-parent refusal is explained.
#[test]
fn the_readme_tour_and_api_example_do_not_collide() {
    let readme = include_str!("../README.md");
    let toured: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("$ berqenas tenant create --name "))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert!(toured.contains(&"acme"), "{toured:?}");
    let curl: Vec<&str> = readme
        .lines()
        .filter(|l| l.contains("-d '{\"name\":\""))
        .filter_map(|l| l.split("\"name\":\"").nth(1)?.split('"').next())
        .collect();
    assert!(!curl.is_empty());
    for name in curl {
        assert!(!toured.contains(&name), "{name} is created twice: a 409");
    }
    assert!(readme.contains("mktemp -d"), "the 0700 parent is explained");
}
