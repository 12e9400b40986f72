import ArgumentParser
import ContainerKernel

#if canImport(Glibc)
import Glibc
#endif

/// `berth`: a Docker-like command line over Berth's public API.
///
/// Every command's configuration names it (`commandName:`): without one, ArgumentParser
/// derives the name from `String(describing: Self.self)`, a dynamic cast that scans every
/// protocol conformance of the binary once per command type, and parsing any command line
/// derives the names of all of them (about a quarter of `berth --help`'s time).
@main
struct Berth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berth",
        abstract: "Run Linux containers with Berth, without a daemon.",
        subcommands: containerCommands + imageCommands + networkCommands + volumeCommands + filesystemCommands
    )
}

/// Docker's exit codes for failures of the tool itself rather than the container.
enum ExitCodes {
    static let berthError: Int32 = 125
    static let notExecutable: Int32 = 126
    static let notFound: Int32 = 127
}

/// Parses Docker's byte sizes: `32m`, `1g`, `512k`, `1mb`, `1048576`.
func parseBytes(_ text: String) throws -> Int64 {
    let units: [Character: Int64] = ["b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30]
    // Docker's spellings too: 1mb, 512kb.
    var lower = text.lowercased()
    if lower.count > 2, lower.hasSuffix("b"), let unit = lower.dropLast().last, "kmg".contains(unit) { lower.removeLast() }
    if let unit = lower.last, let factor = units[unit], let value = Double(lower.dropLast()) {
        return Int64(value * Double(factor))
    }
    guard let value = Int64(lower) else { throw ValidationError("invalid size \"\(text)\"") }
    return value
}

/// Writes a message to stderr.
func printError(_ message: String) {
    var line = Array("berth: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
