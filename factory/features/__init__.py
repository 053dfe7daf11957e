"""Everything generated from the feature spec: records, parse spec, pipelines (and, later, serving)."""
