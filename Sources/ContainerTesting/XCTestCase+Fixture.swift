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
    ///   - fixture: What to start: a ``Fixture``, or a module such as ``RedisFixture``.
    ///   - runtime: The runtime; `nil` is `ContainerRuntime.shared()`.
    /// - Returns: The ready fixture.
    /// - Throws: What ``FixtureModule/fixture(in:)`` and ``Fixture/start(in:)`` throw.
    public func startFixture(_ fixture: some FixtureModule, in runtime: ContainerRuntime? = nil) async throws -> RunningFixture {
        let runtime = try runtime ?? ContainerRuntime.shared()
        let running = try await fixture.fixture(in: runtime).start(in: runtime)
        addTeardownBlock { try await running.remove() }
        return running
    }
}
