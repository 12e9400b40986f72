// swift-tools-version:6.1
//
// code-runner: an HTTP service that runs untrusted commands in throw-away Berth containers
// (the core of online judges, playgrounds and "run this snippet" features). It depends on Berth
// by path, as hello-berth does; a deployed server would name Berth's URL and a version.
import PackageDescription

let package = Package(
    name: "code-runner",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Berth", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.60.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.21.0"),
    ],
    targets: [
        // The service: configuration, the run API, the bounded queue, metrics. A library, so
        // the tests start the real server in their own process.
        .target(
            name: "CodeRunner",
            dependencies: [
                .product(name: "Containers", package: "Berth"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "code-runner",
            dependencies: [
                "CodeRunner",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A bounded load client: N runs at C clients, or the same of a shell command (podman).
        .executableTarget(
            name: "code-runner-load",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "CodeRunnerTests",
            dependencies: [
                "CodeRunner",
                .product(name: "Containers", package: "Berth"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)
