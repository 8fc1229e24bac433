"""One example per orchestration pattern; each module has `build(model=None)` and `main()`.

`SHIPPED_PATTERNS` maps a name to `"module:factory"` for every example pattern (the diagrams
command draws them); calling the factory with no argument builds the pattern on scripted models.
"""

SHIPPED_PATTERNS: dict[str, str] = {
    "sequential": "examples.patterns.pipeline:build",
    "router": "examples.patterns.classifier:build",
    "parallel": "examples.patterns.research_team:build",
    "competitive": "examples.patterns.competitive_analysis:build",
    "manager_worker": "examples.patterns.manager_worker:build",
    "recursive": "examples.patterns.recursive_strategy:build",
    "handoffs": "examples.patterns.customer_service:build",
    "event_driven": "examples.patterns.event_handlers:build",
}
