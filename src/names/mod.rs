//! L0: the names berqenas gives a tenant's objects: its validated name (`Slug`), and
//! from it the schema, database and role names of every isolation mode; the default
//! roles every tenant gets. Below every domain, so the store and the isolation SQL
//! can use them.

pub mod roles;
pub mod slug;

pub use roles::DefaultRole;
pub use slug::Slug;
