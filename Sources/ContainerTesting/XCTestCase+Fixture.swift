public import Containers
public import XCTest

extension XCTestCase {
    /// Starts a fixture for this test and removes it in the test's tear-down.
    ///
    /// Call it from `setUp() async throws` or from the test itself:
    ///
    /// ```swift
    /// final class WebTests: XCTestCase {
    ///     func testServesTheIndex() async throws {
    ///         let web = try await startFixture(web)
    ///         // … removed after the test, also when it fails …
    ///     }
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - fixture: What to start.
    ///   - runtime: The runtime; `nil` is `ContainerRuntime.shared()`.
    /// - Returns: The ready fixture.
    /// - Throws: What ``Fixture/start(in:)`` throws.
    public func startFixture(_ fixture: Fixture, in runtime: ContainerRuntime? = nil) async throws -> RunningFixture {
        let running = try await fixture.start(in: runtime ?? ContainerRuntime.shared())
        addTeardownBlock { try await running.remove() }
        return running
    }
}
