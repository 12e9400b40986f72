// The `Images` target is laid out in Package.swift so that the layering is fixed from the first
// commit; its API arrives with its own issue (see Documentation/Architecture.md).
