//! Fakes of the outside HTTP APIs the operator calls, for tests and the local environment. Every
//! request they receive and every response they send is checked against the vendors' official
//! OpenAPI schemas in `../shared/specs`.
