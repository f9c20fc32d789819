"""Golden cases, evaluators and reports that gate releases (the eval runner arrives with its issue)."""
