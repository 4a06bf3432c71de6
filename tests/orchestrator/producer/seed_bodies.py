"""The request bodies of the seed's curl examples (``../shared/seeds/002_*.txt``), verbatim: the JSON each
``curl -d`` sends, in the order the seed shows them (the ``audio_id`` values are the vendor's; tests put their
own clip ids in)."""

# ruff: noqa: E501  (the lyrics are the seed's one-line JSON strings, kept verbatim)

from __future__ import annotations

from typing import Any

GENERATE: dict[str, Any] = {"action": "generate", "model": "FUZZ-2.0 Pro", "prompt": "A song for Christmas"}

GENERATE_CUSTOM: dict[str, Any] = {
    "action": "generate",
    "model": "FUZZ-2.0 Pro",
    "instrumental": False,
    "lyric": "[Verse]\nWoke up with the sun in my eyes\nNo clouds above just blue in the skies\nShoes on my feet I’m ready to run\nEvery step feels like a loaded gun\n[Chorus]\nHappy days are rolling in\nLet the joy beneath my skin\nNo more shadows no more lies\nJust the truth that lifts me high\n[Verse 2]\nDancing through the city streets\nA rhythm pounding in my heartbeat\nStrangers smile it’s catching on\nThis world’s a stage we’re all a song\n[Chorus]\nHappy days are rolling in\nLet the joy beneath my skin\nNo more shadows no more lies\nJust the truth that lifts me high\n[Bridge]\nThrow your worries out the door\nLet them sink to the ocean floor\nWe’re alive and it’s enough\nLife is messy but it’s love\n[Chorus]\nHappy days are rolling in\nLet the joy beneath my skin\nNo more shadows no more lies\nJust the truth that lifts me high",
    "custom": True,
}

COVER: dict[str, Any] = {
    "action": "cover",
    "model": "FUZZ-2.0 Pro",
    "lyric": "[Verse]\nWoke up with the sun in my eyes\nNo clouds above just blue in the skies\nShoes on my feet I’m ready to run\nEvery step feels like a loaded gun\n[Chorus]\nHappy days are rolling in\nLet the joy beneath my skin\nNo more shadows no more lies\nJust the truth that lifts me high\n[Verse 2]\nDancing through the city streets\nA rhythm pounding in my heartbeat\nStrangers smile it’s catching on\nThis world’s a stage we’re all a song\n[Chorus]\nHappy days are rolling in\nLet the joy beneath my skin\nNo more shadows no more lies\nJust the truth that lifts me high\n[Bridge]\nThrow your worries out the door\nLet them sink to the ocean floor\nWe’re alive and it’s enough\nLife is messy but it’s love\n[Chorus]\nHappy days are rolling in\nLet the joy beneath my skin\nNo more shadows no more lies\nJust the truth that lifts me high",
    "audio_id": "38d3b9e2-0dfb-4338-b2a7-15e45656ed32",
    "instrumental": False,
    "custom": True,
    "title": "Cover",
}

EXTEND: dict[str, Any] = {
    "action": "extend",
    "model": "FUZZ-2.0 Pro",
    "instrumental": False,
    "lyric": "[段落]\n在阳光照耀下醒来\n天空中没有云彩,只有蓝天\n脚上穿着鞋子,我准备出发\n每一步都像是上膛的枪\n[副歌]\n快乐的日子正在到来\n让快乐在我肌肤下流淌\n不再有阴影,不再有谎言\n只有真相让我高飞\n[段落 2]\n在城市街道上舞动\n心跳中有节奏的脉动\n陌生人微笑,感染着我\n这个世界是个舞台,我们都是一首歌\n[副歌]\n快乐的日子正在到来\n让快乐在我肌肤下流淌\n不再有阴影,不再有谎言\n只有真相让我高飞\n[桥段]\n把你的烦恼扔出门外\n让它们沉入海底\n我们活着,这就足够了\n生活是混乱的,但它是爱\n[副歌]\n快乐的日子正在到来\n让快乐在我肌肤下流淌\n不再有阴影,不再有谎言\n只有真相让我高飞",
    "continue_at": 3,
    "audio_id": "38d3b9e2-0dfb-4338-b2a7-15e45656ed32",
    "custom": True,
    "title": "续写",
    "weirdness": 0.3,
    "sound_strength": 0.3,
    "lyrics_strength": 0.6,
}

VARIATION: dict[str, Any] = {
    "action": "variation",
    "audio_id": "d9ebc609-fb65-4a23-b914-c074747af6a4",
    "model": "FUZZ-2.0 Pro",
    "instrumental": False,
    "lyric": "[Verse]\nWoke up with the sun in my eyes\nNo clouds above just blue in the skies\nShoes on my feet I’m ready to run\nEvery step feels like a loaded gun\n[Chorus]\nHappy days are rolling in\nLet the joy beneath my skin\nNo more shadows no more lies\nJust the truth that lifts me high\n[Verse 2]\nDancing through the city streets\nA rhythm pounding in my heartbeat\nStrangers smile it’s catching on\nThis world’s a stage we’re all a song\n[Chorus]\nHappy days are rolling in\nLet the joy beneath my skin\nNo more shadows no more lies\nJust the truth that lifts me high\n[Bridge]\nThrow your worries out the door\nLet them sink to the ocean floor\nWe’re alive and it’s enough\nLife is messy but it’s love\n[Chorus]\nHappy days are rolling in\nLet the joy beneath my skin\nNo more shadows no more lies\nJust the truth that lifts me high",
    "custom": True,
}

REPLACE_SECTION: dict[str, Any] = {
    "action": "replace_section",
    "model": "FUZZ-2.0 Pro",
    "instrumental": False,
    "lyric": "[Verse]\\nWoke up with the sun in my eyes\\nNo clouds above just blue in the skies\\nShoes on my feet I’m ready to run\\nEvery step feels like a loaded gun\\n[Chorus]\\nHappy days are rolling in\\nLet the joy beneath my skin\\nNo more shadows no more lies\\nJust the truth that lifts me high\\n[Verse 2]\\nDancing through the city streets\\nA rhythm pounding in my heartbeat\\nStrangers smile it’s catching on\\nThis world’s a stage we’re all a song\\n[Chorus]\\nHappy days are rolling in\\nLet the joy beneath my skin\\nNo more shadows no more lies\\nJust the truth that lifts me high\\n[Bridge]\\nThrow your worries out the door\\nLet them sink to the ocean floor\\nWe’re alive and it’s enough\\nLife is messy but it’s love\\n[Chorus]\\nHappy days are rolling in\\nLet the joy beneath my skin\\nNo more shadows no more lies\\nJust the truth that lifts me high",
    "audio_id": "d9ebc609-fb65-4a23-b914-c074747af6a4",
    "replace_section_start": 3,
    "replace_section_end": 70,
    "custom": True,
}

SWAP_INSTRUMENTALS: dict[str, Any] = {
    "action": "swap_instrumentals",
    "model": "FUZZ-2.0 Pro",
    "weirdness": 0.6,
    "prompt": "快樂",
    "audio_id": "d9ebc609-fb65-4a23-b914-c074747af6a4",
}

SWAP_VOCALS: dict[str, Any] = {
    "action": "swap_vocals",
    "model": "FUZZ-2.0 Pro",
    "instrumental": False,
    "lyric": "[Verse]\n在陽光下醒來\n天空中沒有雲,只有藍天\n鞋子穿在腳上,我準備好奔跑\n每一步都像是一把上膛的槍\n[Chorus]\n快樂的日子正在來臨\n讓快樂在我肌膚下流淌\n不再有陰影,不再有謊言\n只有真相讓我高飛\n[Verse 2]\n在城市街道上舞動\n心跳中有節奏的敲擊\n陌生人微笑,這是會傳染的\n這個世界是一個舞台,我們都是一首歌\n[Chorus]\n快樂的日子正在來臨\n讓快樂在我肌膚下流淌\n不再有陰影,不再有謊言\n只有真相讓我高飛\n[Bridge]\n把你的煩惱扔出門外\n讓它們沉入海洋底\n我們活著,這就足夠了\n生活雜亂,但這就是愛\n[Chorus]\n快樂的日子正在來臨\n讓快樂在我肌膚下流淌\n不再有陰影,不再有謊言\n只有真相讓我高飛",
    "weirdness": 0.6,
    "lyrics_strength": 0.8,
    "audio_id": "d9ebc609-fb65-4a23-b914-c074747af6a4",
    "custom": True,
}

STEMS: dict[str, Any] = {"action": "stems", "audio_id": "a54609c6-13e2-4176-be0f-4d7eebc68e1f"}

SEED_BODIES = {
    "generate": GENERATE,
    "generate_custom": GENERATE_CUSTOM,
    "cover": COVER,
    "extend": EXTEND,
    "variation": VARIATION,
    "replace_section": REPLACE_SECTION,
    "swap_instrumentals": SWAP_INSTRUMENTALS,
    "swap_vocals": SWAP_VOCALS,
    "stems": STEMS,
}
