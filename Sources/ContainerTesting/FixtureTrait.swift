public import Containers
public import Testing

/// A Swift Testing trait that starts a fixture around a test or a suite and removes it after.
///
/// On a test, each run of the test (each argument of a parameterized test) gets a fresh
/// container; on a suite, one container serves every test in it. Inside, the test finds the
/// fixture by name with ``RunningFixture/scoped(_:)``:
///
/// ```swift
/// @Test(.fixture("web", web))
/// func servesTheIndex() async throws {
///     let web = try RunningFixture.scoped("web")
///     // …
/// }
/// ```
///
/// A fixture that does not become ready fails the test with its ``FixtureError``.
public struct FixtureTrait: TestTrait, SuiteTrait, TestScoping {
    /// The name the test finds the fixture by.
    public let name: String
    /// What is started.
    public let fixture: Fixture
    private let runtime: @Sendable () async throws -> ContainerRuntime

    /// Once around a suite, not again around each of its tests.
    public var isRecursive: Bool { false }

    /// Starts the fixture, runs the test (or suite) with it in scope, and removes it.
    ///
    /// - Parameters:
    ///   - test: The test or suite.
    ///   - testCase: The run of the test, or `nil` for a suite.
    ///   - function: The test or suite.
    /// - Throws: What ``Fixture/start(in:)`` or the test throws.
    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        try await withFixture(fixture, in: runtime()) { running in
            var scoped = RunningFixture.inScope
            scoped[name] = running
            try await RunningFixture.$inScope.withValue(scoped) { try await function() }
        }
    }

    init(name: String, fixture: Fixture, runtime: @escaping @Sendable () async throws -> ContainerRuntime) {
        self.name = name
        self.fixture = fixture
        self.runtime = runtime
    }
}

extension Trait where Self == FixtureTrait {
    /// A fixture started around the test or suite, found inside with
    /// ``RunningFixture/scoped(_:)``.
    ///
    /// - Parameters:
    ///   - name: The name the test finds it by.
    ///   - fixture: What is started.
    ///   - runtime: Makes the runtime the container belongs to; by default the shared one.
    /// - Returns: The trait.
    public static func fixture(
        _ name: String, _ fixture: Fixture,
        runtime: @escaping @Sendable () async throws -> ContainerRuntime = { try ContainerRuntime.shared() }
    ) -> Self {
        FixtureTrait(name: name, fixture: fixture, runtime: runtime)
    }
}

extension RunningFixture {
    /// The fixtures that ``FixtureTrait``s around the current task provide, by name.
    @TaskLocal static var inScope: [String: RunningFixture] = [:]

    /// The fixture a ``FixtureTrait`` around the running test or its suite started under `name`.
    ///
    /// - Parameter name: The name given to ``Testing/Trait/fixture(_:_:runtime:)``.
    /// - Returns: The ready fixture.
    /// - Throws: ``FixtureError`` (``FixtureError/Code/notInScope``) when no trait provides it.
    public static func scoped(_ name: String) throws(FixtureError) -> RunningFixture {
        guard let running = inScope[name] else {
            throw FixtureError(code: .notInScope,
                               detail: "no fixture \"\(name)\" around this test (in scope: \(inScope.keys.sorted()))")
        }
        return running
    }
}
