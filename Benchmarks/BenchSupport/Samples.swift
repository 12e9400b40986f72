// What the benchmark programs share: timings gathered in milliseconds and printed as one line
// that scripts/bench reads (`NAME median_ms=… p10_ms=… p90_ms=… runs=N`).

/// Runs in milliseconds, summarised as scripts/bench reads them.
public struct Samples {
    /// The row's name, the first word of the line.
    public let name: String
    /// Each run, in milliseconds, in the order they were added.
    public private(set) var values: [Double] = []

    /// An empty row called `name`.
    public init(name: String) { self.name = name }

    /// Adds one run.
    public mutating func add(_ duration: Duration) {
        let parts = duration.components
        values.append(Double(parts.seconds) * 1e3 + Double(parts.attoseconds) / 1e15)
    }

    /// Prints the median, the 10th and the 90th percentile and the count; nothing without runs.
    public func report() {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return }
        func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        print("\(name) median_ms=\(percentile(0.5)) p10_ms=\(percentile(0.1)) p90_ms=\(percentile(0.9)) runs=\(sorted.count)")
    }
}
