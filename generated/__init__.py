"""Code generated from specs/ by `ggstack codegen`; never edited by hand."""
