"""The seed API's scenarios on the built-in connectors (`fsm_agents.connectors`); each module has
`main()` and runs on the embedded local model, or on scripted models when it cannot be served."""
