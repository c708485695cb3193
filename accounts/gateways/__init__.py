"""Payment gateway ports: one real client per provider (the local stand-ins live in testsupport/)."""
