from kvdb.v1 import kv_pb2 as _kv_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Member(_message.Message):
    __slots__ = ["address", "client_address", "id", "is_leader", "is_learner", "last_contact_ms", "name", "peer_address", "reachable"]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    IS_LEARNER_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_MS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    address: str
    client_address: str
    id: int
    is_leader: bool
    is_learner: bool
    last_contact_ms: int
    name: str
    peer_address: str
    reachable: bool
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., is_leader: bool = ..., is_learner: bool = ..., peer_address: _Optional[str] = ..., client_address: _Optional[str] = ..., reachable: bool = ..., last_contact_ms: _Optional[int] = ...) -> None: ...

class MemberAddRequest(_message.Message):
    __slots__ = ["address", "name", "peer_address"]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    name: str
    peer_address: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., peer_address: _Optional[str] = ...) -> None: ...

class MemberAddResponse(_message.Message):
    __slots__ = ["header", "member", "members"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    member: Member
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., member: _Optional[_Union[Member, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class MemberListRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class MemberListResponse(_message.Message):
    __slots__ = ["header", "members"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class MemberRemoveRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class MemberRemoveResponse(_message.Message):
    __slots__ = ["header", "members"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class NetworkStats(_message.Message):
    __slots__ = ["active_connections", "address", "total_requests"]
    ACTIVE_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    active_connections: int
    address: str
    total_requests: int
    def __init__(self, active_connections: _Optional[int] = ..., total_requests: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class OperationMetrics(_message.Message):
    __slots__ = ["operations", "uptime_seconds"]
    class OperationsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: OperationStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[OperationStats, _Mapping]] = ...) -> None: ...
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.MessageMap[str, OperationStats]
    uptime_seconds: float
    def __init__(self, uptime_seconds: _Optional[float] = ..., operations: _Optional[_Mapping[str, OperationStats]] = ...) -> None: ...

class OperationStats(_message.Message):
    __slots__ = ["avg_latency", "count", "ops_per_sec", "p95_latency", "p99_latency"]
    AVG_LATENCY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    OPS_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_FIELD_NUMBER: _ClassVar[int]
    P99_LATENCY_FIELD_NUMBER: _ClassVar[int]
    avg_latency: int
    count: int
    ops_per_sec: float
    p95_latency: int
    p99_latency: int
    def __init__(self, count: _Optional[int] = ..., ops_per_sec: _Optional[float] = ..., avg_latency: _Optional[int] = ..., p95_latency: _Optional[int] = ..., p99_latency: _Optional[int] = ...) -> None: ...

class RaftStats(_message.Message):
    __slots__ = ["commit_index", "current_term", "leader_id", "log_length", "node_id", "state", "state_name"]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    CURRENT_TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_NAME_FIELD_NUMBER: _ClassVar[int]
    commit_index: int
    current_term: int
    leader_id: str
    log_length: int
    node_id: str
    state: int
    state_name: str
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[int] = ..., current_term: _Optional[int] = ..., leader_id: _Optional[str] = ..., log_length: _Optional[int] = ..., commit_index: _Optional[int] = ..., state_name: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ["header", "metrics", "network", "raft", "storage", "transactions"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    RAFT_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    metrics: OperationMetrics
    network: NetworkStats
    raft: RaftStats
    storage: StorageStats
    transactions: TransactionStats
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., storage: _Optional[_Union[StorageStats, _Mapping]] = ..., network: _Optional[_Union[NetworkStats, _Mapping]] = ..., raft: _Optional[_Union[RaftStats, _Mapping]] = ..., metrics: _Optional[_Union[OperationMetrics, _Mapping]] = ..., transactions: _Optional[_Union[TransactionStats, _Mapping]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ["applied_index", "client_address", "commit_index", "data_dir", "header", "is_leader", "keys", "leader_id", "leader_member_id", "memory_usage", "node_id", "raft_state", "term", "version"]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USAGE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_STATE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    applied_index: int
    client_address: str
    commit_index: int
    data_dir: str
    header: _kv_pb2.ResponseHeader
    is_leader: bool
    keys: int
    leader_id: str
    leader_member_id: int
    memory_usage: int
    node_id: str
    raft_state: str
    term: int
    version: str
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., node_id: _Optional[str] = ..., is_leader: bool = ..., leader_id: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., raft_state: _Optional[str] = ..., version: _Optional[str] = ..., keys: _Optional[int] = ..., memory_usage: _Optional[int] = ..., data_dir: _Optional[str] = ..., leader_member_id: _Optional[int] = ..., client_address: _Optional[str] = ...) -> None: ...

class StorageStats(_message.Message):
    __slots__ = ["evicted_keys", "eviction_policy", "expired_keys", "keys", "max_memory", "memory_usage", "version"]
    EVICTED_KEYS_FIELD_NUMBER: _ClassVar[int]
    EVICTION_POLICY_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_KEYS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    evicted_keys: int
    eviction_policy: str
    expired_keys: int
    keys: int
    max_memory: int
    memory_usage: int
    version: int
    def __init__(self, keys: _Optional[int] = ..., memory_usage: _Optional[int] = ..., max_memory: _Optional[int] = ..., version: _Optional[int] = ..., evicted_keys: _Optional[int] = ..., eviction_policy: _Optional[str] = ..., expired_keys: _Optional[int] = ...) -> None: ...

class TransactionStats(_message.Message):
    __slots__ = ["aborts", "active", "commits", "expired"]
    ABORTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    aborts: int
    active: int
    commits: int
    expired: int
    def __init__(self, commits: _Optional[int] = ..., aborts: _Optional[int] = ..., active: _Optional[int] = ..., expired: _Optional[int] = ...) -> None: ...

class TransferLeaderRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class TransferLeaderResponse(_message.Message):
    __slots__ = ["header", "leader"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    leader: str
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., leader: _Optional[str] = ...) -> None: ...
