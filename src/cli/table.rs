//! The borderless tables `status`, `backups` and `history` print: columns two
//! spaces apart, each as wide as its widest cell (never narrower than it was when
//! the widths were fixed), so a long image or file name widens its column instead
//! of pushing the rest of its row out of line.

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ColumnConstraint, Table, Width};

/// One column: its header, the width it is never narrower than, and whether its
/// cells are right-aligned (numbers).
pub(super) struct Column {
    pub header: &'static str,
    pub min_width: u16,
    pub right: bool,
}

/// Left-aligned, at least `min_width` wide.
pub(super) const fn left(header: &'static str, min_width: u16) -> Column {
    Column {
        header,
        min_width,
        right: false,
    }
}

/// Right-aligned, at least `min_width` wide.
pub(super) const fn right(header: &'static str, min_width: u16) -> Column {
    Column {
        header,
        min_width,
        right: true,
    }
}

/// Lays out `rows` under `columns`; each line ends without trailing spaces.
pub(super) fn render(columns: &[Column], rows: Vec<Vec<String>>) -> String {
    const GAP: u16 = 2;
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_header(columns.iter().map(|c| c.header).collect::<Vec<_>>())
        .add_rows(rows);
    let last = columns.len() - 1;
    for (i, (column, spec)) in table.column_iter_mut().zip(columns).enumerate() {
        let gap = if i == last { 0 } else { GAP };
        column.set_padding((0, gap));
        column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(
            spec.min_width + gap,
        )));
        if spec.right {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table.trim_fmt() + "\n"
}
