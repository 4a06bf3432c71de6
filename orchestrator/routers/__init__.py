"""HTTP routes, thin: parse, authorise, call a service, shape the answer."""
