//! The fleet dashboard served by `cairn serve` at `/`: every stream, rollout,
//! outcome, halt and reboot lock, as server-rendered HTML with inline SVG and
//! as JSON under `/api/`. Pages are rendered from the same [`model`] values
//! the JSON carries, work without JavaScript, and load nothing from other
//! hosts. Without a session the dashboard is read-only; see
//! `docs/dashboard.md`.

pub mod model;
