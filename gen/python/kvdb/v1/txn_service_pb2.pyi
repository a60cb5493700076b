from kvdb.v1 import kv_pb2 as _kv_pb2
from kvdb.v1 import kv_service_pb2 as _kv_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

COMPARE_OPERATOR_EQUAL: CompareOperator
COMPARE_OPERATOR_GREATER: CompareOperator
COMPARE_OPERATOR_LESS: CompareOperator
COMPARE_OPERATOR_NOT_EQUAL: CompareOperator
COMPARE_OPERATOR_UNSPECIFIED: CompareOperator
DESCRIPTOR: _descriptor.FileDescriptor

class BeginRequest(_message.Message):
    __slots__ = ["txn_id"]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ...) -> None: ...

class BeginResponse(_message.Message):
    __slots__ = ["header", "start_revision", "txn_id"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    start_revision: int
    txn_id: str
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., txn_id: _Optional[str] = ..., start_revision: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ["txn_id"]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ["deleted", "header", "puts"]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PUTS_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    header: _kv_pb2.ResponseHeader
    puts: int
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., puts: _Optional[int] = ..., deleted: _Optional[int] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ["create_revision", "key", "mod_revision", "operator", "value", "version"]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    create_revision: int
    key: bytes
    mod_revision: int
    operator: CompareOperator
    value: bytes
    version: int
    def __init__(self, key: _Optional[bytes] = ..., operator: _Optional[_Union[CompareOperator, str]] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., create_revision: _Optional[int] = ..., mod_revision: _Optional[int] = ...) -> None: ...

class ExecuteOp(_message.Message):
    __slots__ = ["delete", "put", "range"]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    delete: _kv_service_pb2.DeleteRequest
    put: _kv_service_pb2.PutRequest
    range: _kv_service_pb2.RangeRequest
    def __init__(self, range: _Optional[_Union[_kv_service_pb2.RangeRequest, _Mapping]] = ..., put: _Optional[_Union[_kv_service_pb2.PutRequest, _Mapping]] = ..., delete: _Optional[_Union[_kv_service_pb2.DeleteRequest, _Mapping]] = ...) -> None: ...

class ExecuteOpResponse(_message.Message):
    __slots__ = ["delete", "put", "range"]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    delete: _kv_service_pb2.DeleteResponse
    put: _kv_service_pb2.PutResponse
    range: _kv_service_pb2.RangeResponse
    def __init__(self, range: _Optional[_Union[_kv_service_pb2.RangeResponse, _Mapping]] = ..., put: _Optional[_Union[_kv_service_pb2.PutResponse, _Mapping]] = ..., delete: _Optional[_Union[_kv_service_pb2.DeleteResponse, _Mapping]] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ["compares", "failure", "success"]
    COMPARES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    compares: _containers.RepeatedCompositeFieldContainer[Compare]
    failure: _containers.RepeatedCompositeFieldContainer[ExecuteOp]
    success: _containers.RepeatedCompositeFieldContainer[ExecuteOp]
    def __init__(self, compares: _Optional[_Iterable[_Union[Compare, _Mapping]]] = ..., success: _Optional[_Iterable[_Union[ExecuteOp, _Mapping]]] = ..., failure: _Optional[_Iterable[_Union[ExecuteOp, _Mapping]]] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ["header", "responses", "succeeded"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    responses: _containers.RepeatedCompositeFieldContainer[ExecuteOpResponse]
    succeeded: bool
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., succeeded: bool = ..., responses: _Optional[_Iterable[_Union[ExecuteOpResponse, _Mapping]]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ["txn_id"]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ["header"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class TxnServiceDeleteRequest(_message.Message):
    __slots__ = ["key", "txn_id"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class TxnServiceDeleteResponse(_message.Message):
    __slots__ = ["header"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class TxnServiceGetRequest(_message.Message):
    __slots__ = ["key", "txn_id"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class TxnServiceGetResponse(_message.Message):
    __slots__ = ["header", "kv"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    kv: _kv_pb2.KeyValue
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., kv: _Optional[_Union[_kv_pb2.KeyValue, _Mapping]] = ...) -> None: ...

class TxnServicePutRequest(_message.Message):
    __slots__ = ["key", "txn_id", "value"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    txn_id: str
    value: bytes
    def __init__(self, txn_id: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class TxnServicePutResponse(_message.Message):
    __slots__ = ["header"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class TxnServiceRangeRequest(_message.Message):
    __slots__ = ["key", "limit", "prefix", "range_end", "txn_id"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    RANGE_END_FIELD_NUMBER: _ClassVar[int]
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    limit: int
    prefix: bool
    range_end: bytes
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ..., key: _Optional[bytes] = ..., range_end: _Optional[bytes] = ..., prefix: bool = ..., limit: _Optional[int] = ...) -> None: ...

class TxnServiceRangeResponse(_message.Message):
    __slots__ = ["header", "kvs", "more"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KVS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    header: _kv_pb2.ResponseHeader
    kvs: _containers.RepeatedCompositeFieldContainer[_kv_pb2.KeyValue]
    more: bool
    def __init__(self, header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ..., kvs: _Optional[_Iterable[_Union[_kv_pb2.KeyValue, _Mapping]]] = ..., more: bool = ...) -> None: ...

class CompareOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
