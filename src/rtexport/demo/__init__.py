"""The built-in demo: a generated phantom course, an illustrative site and a two-beam plan."""
