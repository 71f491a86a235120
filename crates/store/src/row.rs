//! Rows decoded by column name. A row struct per table (or per statement shape) lists the
//! columns it reads as its fields; each field is read from the column of its own name, so a
//! statement's column order never matters and a missing column fails loudly.

use crate::Error;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

/// Declares a row struct and its decoding by column name.
macro_rules! row_struct {
    ($(#[$meta:meta])* struct $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub(crate) struct $name {
            $(pub(crate) $field: $ty,)*
        }

        impl TryFrom<&tokio_postgres::Row> for $name {
            type Error = crate::Error;
            fn try_from(row: &tokio_postgres::Row) -> Result<Self, crate::Error> {
                Ok(Self {
                    $($field: crate::row::get(row, stringify!($field))?,)*
                })
            }
        }
    };
}
pub(crate) use row_struct;

/// One column by name; a missing column or a type that does not fit is a bug, never a value.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, column: &str) -> Result<T, Error> {
    row.try_get(column)
        .map_err(|e| Error::Corrupt(format!("column {column}: {e}")))
}

/// The elements of arrays aggregated side by side (`array_agg(…) AS …` of one grouping), in
/// step; a NULL array (nothing to aggregate) is empty.
pub(crate) fn in_step<A, B, C>(
    a: Option<Vec<A>>,
    b: Option<Vec<B>>,
    c: Option<Vec<C>>,
) -> impl Iterator<Item = (A, B, C)> {
    let (a, b, c) = (
        a.unwrap_or_default(),
        b.unwrap_or_default(),
        c.unwrap_or_default(),
    );
    a.into_iter().zip(b).zip(c).map(|((a, b), c)| (a, b, c))
}
