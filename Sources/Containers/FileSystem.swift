import FoundationEssentials

// The JSON decoding of the runtime's own state records (read with SystemSupport's
// readWholeFile). They are written by RecordEncoder, which writes what a
// JSONEncoder with .sortedKeys and .iso8601 dates would, at a fraction of its first use's cost.

let jsonDecoder: JSONDecoder = {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return decoder
}()
